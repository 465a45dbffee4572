//! Test fixture: the right layout, but a root module that says it was built
//! against plugin-api 9.0.0 (as a plugin from a future, incompatible
//! interface would).

use storage_plugin_api::ffi::{PluginMod, PluginModRef};

/// Exported by hand instead of through `export_plugin!`, to forge the version.
fn module() -> PluginModRef {
    let real = storage_plugin_api::module_of::<Nothing>();
    PluginMod {
        api_version: abi_stable_str("9.0.0"),
        name: real.name(),
        version: real.version(),
        description: real.description(),
        validate_config: real.validate_config(),
        create: real.create(),
        create_with_state: real.create_with_state().expect("present"),
    }
    .leak_into_prefix()
}

fn abi_stable_str(
    s: &'static str,
) -> storage_plugin_api::__private::abi_stable::std_types::RStr<'static> {
    s.into()
}

use storage_plugin_api::__private::abi_stable::prefix_type::PrefixTypeTrait;

/// A plugin that never gets to run.
pub struct Nothing;

impl storage_plugin_api::Plugin for Nothing {
    type Config = serde::de::IgnoredAny;
    type Backend = NoBackend;
    const NAME: &'static str = "future";
    const VERSION: &'static str = "9.0.0";
    const DESCRIPTION: &'static str = "built against a future plugin-api";
    async fn create(_: Self::Config) -> Result<NoBackend, storage_plugin_api::Error> {
        Ok(NoBackend)
    }
}

/// Never created.
pub struct NoBackend;

impl storage_plugin_api::Backend for NoBackend {
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, storage_plugin_api::Error> {
        Ok(None)
    }
    async fn put(&self, _: &str, _: Vec<u8>) -> Result<(), storage_plugin_api::Error> {
        Ok(())
    }
    async fn delete(&self, _: &str) -> Result<(), storage_plugin_api::Error> {
        Ok(())
    }
}

/// The forged root module.
// SAFETY: same construction as `export_plugin!`, with a module of the right type.
#[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
pub static ROOT: storage_plugin_api::__private::abi_stable::library::LibHeader = {
    extern "C" fn root() -> storage_plugin_api::__private::abi_stable::library::RootModuleResult {
        storage_plugin_api::__private::abi_stable::library::__call_root_module_loader(module)
    }
    // SAFETY: `root` returns a `PluginModRef`.
    unsafe {
        storage_plugin_api::__private::abi_stable::library::LibHeader::from_constructor::<
            PluginModRef,
        >(
            root,
            storage_plugin_api::__private::abi_stable::library::CheckTypeLayout::Yes,
        )
    }
};
