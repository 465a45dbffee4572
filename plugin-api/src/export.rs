//! The glue [`export_plugin!`](crate::export_plugin) generates: extern "C"
//! functions that parse the JSON config, call the author's async code, and turn
//! every panic into an [`ErrorKind::Panicked`](crate::ErrorKind::Panicked) error.
//!
//! Why catch panics here and not in the host: abi_stable's shims abort the
//! process when a panic unwinds through them, and async-ffi re-raises a panic
//! from `poll` on the host side. The only safe place is inside the plugin,
//! around every entry point and every future it returns.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::{
    prefix_type::WithMetadata,
    sabi_trait::TD_Opaque,
    staticref,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
};
use async_ffi::FutureExt as _;
use futures_util::FutureExt as _;

use crate::ffi::{
    BackendBox, FfiBackend, FfiBackend_TO, FfiBorrowed, FfiKeyPage, FfiResult, PluginMod,
    PluginModRef,
};
use crate::{Backend, Error, Plugin};

/// Renders a panic payload for an error message.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

fn panicked(what: &str, payload: Box<dyn Any + Send>) -> Error {
    Error::new(
        crate::ErrorKind::Panicked,
        format!("plugin panicked in {what}: {}", panic_message(&*payload)),
    )
}

/// Runs `fut` to completion across the boundary, catching panics from any poll.
fn guarded<'a, T, F>(what: &'static str, fut: F) -> FfiBorrowed<'a, T>
where
    T: Send + 'a,
    F: Future<Output = Result<T, Error>> + Send + 'a,
{
    AssertUnwindSafe(fut)
        .catch_unwind()
        .map(move |r| match r {
            Ok(Ok(v)) => RResult::ROk(v),
            Ok(Err(e)) => RResult::RErr(e),
            Err(payload) => RResult::RErr(panicked(what, payload)),
        })
        .into_ffi()
}

fn parse_config<P: Plugin>(json: &str) -> Result<P::Config, Error> {
    serde_json::from_str(json)
        .map_err(|e| Error::invalid_config(format!("plugin '{}': bad configuration: {e}", P::NAME)))
}

/// The author's backend, wrapped so it implements [`FfiBackend`].
struct Exported<B>(B);

impl<B: Backend> FfiBackend for Exported<B> {
    fn get(&self, key: RString) -> FfiBorrowed<'_, ROption<RVec<u8>>> {
        let b = &self.0;
        guarded("get", async move {
            Ok(b.get(key.as_str()).await?.map(RVec::from).into())
        })
    }

    fn put(&self, key: RString, value: RVec<u8>) -> FfiBorrowed<'_, ()> {
        let b = &self.0;
        guarded(
            "put",
            async move { b.put(key.as_str(), value.into_vec()).await },
        )
    }

    fn delete(&self, key: RString) -> FfiBorrowed<'_, ()> {
        let b = &self.0;
        guarded("delete", async move { b.delete(key.as_str()).await })
    }

    fn list(&self, prefix: RString) -> FfiBorrowed<'_, RVec<RString>> {
        let b = &self.0;
        guarded("list", async move {
            let keys = b.list(prefix.as_str()).await?;
            Ok(keys.into_iter().map(RString::from).collect())
        })
    }

    fn list_page(
        &self,
        prefix: RString,
        after: ROption<RString>,
        limit: u64,
    ) -> FfiBorrowed<'_, FfiKeyPage> {
        let b = &self.0;
        guarded("list_page", async move {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let after = after.as_ref().map(RString::as_str).into_option();
            let page = b.list_page(prefix.as_str(), after, limit).await?;
            Ok(FfiKeyPage {
                keys: page.keys.into_iter().map(RString::from).collect(),
                more: page.more,
            })
        })
    }

    fn shutdown(&self) -> FfiBorrowed<'_, ()> {
        let b = &self.0;
        guarded("shutdown", async move { b.shutdown().await })
    }

    fn export_state(&self) -> FfiBorrowed<'_, ROption<RVec<u8>>> {
        let b = &self.0;
        guarded("export_state", async move {
            Ok(b.export_state().await?.map(RVec::from).into())
        })
    }
}

fn boxed<B: Backend>(backend: B) -> BackendBox {
    FfiBackend_TO::from_ptr(RBox::new(Exported(backend)), TD_Opaque)
}

extern "C" fn validate_config<P: Plugin>(config: RStr<'_>) -> RResult<(), Error> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let config = parse_config::<P>(config.as_str())?;
        P::validate(&config)
    }));
    match result {
        Ok(r) => r.into(),
        Err(payload) => RResult::RErr(panicked("validate_config", payload)),
    }
}

extern "C" fn create<P: Plugin>(config: RString) -> FfiResult<BackendBox> {
    guarded("create", async move {
        let config = parse_config::<P>(config.as_str())?;
        P::validate(&config)?;
        Ok(boxed(P::create(config).await?))
    })
}

extern "C" fn create_with_state<P: Plugin>(
    config: RString,
    state: RVec<u8>,
) -> FfiResult<BackendBox> {
    guarded("create", async move {
        let config = parse_config::<P>(config.as_str())?;
        P::validate(&config)?;
        Ok(boxed(P::create_with_state(config, state.into_vec()).await?))
    })
}

/// Holds the root module of plugin `P` in a `'static` (generic statics do not
/// exist in Rust; `staticref!` makes an associated constant instead).
struct ModuleOf<P>(PhantomData<P>);

impl<P: Plugin> ModuleOf<P> {
    staticref!(const MODULE: WithMetadata<PluginMod> = WithMetadata::new(PluginMod {
        api_version: RStr::from_str(crate::API_VERSION),
        name: RStr::from_str(P::NAME),
        version: RStr::from_str(P::VERSION),
        description: RStr::from_str(P::DESCRIPTION),
        validate_config: validate_config::<P>,
        create: create::<P>,
        create_with_state: create_with_state::<P>,
    }));
}

/// The root module of plugin `P`, without a library: what `export_plugin!`
/// exports, and what a host uses to run a plugin linked in statically through
/// the very same interface. The handle is opaque: pass it to the host's
/// host (the storage host wraps it in `AbiPlugin::new` and registers that).
pub fn module_of<P: Plugin>() -> PluginModRef {
    PluginModRef(ModuleOf::<P>::MODULE.as_prefix())
}
