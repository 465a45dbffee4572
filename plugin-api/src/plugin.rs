//! The traits a plugin author implements: ordinary async Rust, no FFI types.
//!
//! [`export_plugin!`](crate::export_plugin) turns an implementation into the
//! ABI-stable root module the host loads.

use std::future::Future;

use serde::de::DeserializeOwned;

use crate::{Error, KeyPage};

/// A storage plugin: metadata plus a factory of [`Backend`]s.
///
/// ```
/// use storage_plugin_api::{Backend, Error, Plugin};
///
/// #[derive(serde::Deserialize)]
/// struct Config { greeting: String }
///
/// struct Hello;
/// struct HelloBackend(String);
///
/// impl Plugin for Hello {
///     type Config = Config;
///     type Backend = HelloBackend;
///     const NAME: &'static str = "hello";
///     const VERSION: &'static str = "0.1.0";
///     const DESCRIPTION: &'static str = "answers every get with a greeting";
///
///     async fn create(config: Config) -> Result<HelloBackend, Error> {
///         Ok(HelloBackend(config.greeting))
///     }
/// }
///
/// impl Backend for HelloBackend {
///     async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, Error> {
///         Ok(Some(self.0.clone().into_bytes()))
///     }
///     async fn put(&self, _key: &str, _value: Vec<u8>) -> Result<(), Error> {
///         Err(Error::unsupported("hello is read-only"))
///     }
///     async fn delete(&self, _key: &str) -> Result<(), Error> {
///         Err(Error::unsupported("hello is read-only"))
///     }
/// }
/// ```
pub trait Plugin: 'static {
    /// The plugin's configuration, deserialized from the JSON the host passes.
    /// Unknown or missing fields become an [`ErrorKind::InvalidConfig`](crate::ErrorKind) error
    /// naming the field (use `#[serde(deny_unknown_fields)]` to reject typos).
    type Config: DeserializeOwned + Send + 'static;
    /// The backend this plugin creates.
    type Backend: Backend;

    /// The name backends refer to (`StorageConfig::Custom { plugin_name, .. }`).
    const NAME: &'static str;
    /// The plugin's own version (usually `env!("CARGO_PKG_VERSION")`).
    const VERSION: &'static str;
    /// One line saying what the plugin stores data in.
    const DESCRIPTION: &'static str;

    /// Checks a configuration without connecting to anything.
    /// Called before [`create`](Plugin::create); the default accepts anything that parsed.
    fn validate(config: &Self::Config) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// Creates a backend from a validated configuration.
    fn create(config: Self::Config) -> impl Future<Output = Result<Self::Backend, Error>> + Send;

    /// Creates a backend that continues from `state`, produced by
    /// [`Backend::export_state`] of an instance being hot-swapped out (possibly
    /// of an older version of this plugin). The default ignores the state.
    fn create_with_state(
        config: Self::Config,
        state: Vec<u8>,
    ) -> impl Future<Output = Result<Self::Backend, Error>> + Send {
        let _ = state;
        Self::create(config)
    }
}

/// One storage backend instance: a key-value store of byte values.
///
/// Every method may be called concurrently from many tasks. The futures are
/// polled by the host's runtime, which is invisible inside a plugin: a backend
/// that needs tokio (for a network client) owns a runtime and spawns onto it.
pub trait Backend: Send + Sync + 'static {
    /// Reads `key`; `Ok(None)` when it does not exist.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, Error>> + Send;

    /// Writes `value` under `key`, replacing any previous value. Returns once
    /// the write is as durable as the backend promises.
    fn put(&self, key: &str, value: Vec<u8>) -> impl Future<Output = Result<(), Error>> + Send;

    /// Removes `key`. Removing a missing key succeeds.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), Error>> + Send;

    /// The keys starting with `prefix`, in ascending byte order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, Error>> + Send {
        let _ = prefix;
        async { Err(Error::unsupported("this backend cannot list keys")) }
    }

    /// Up to `limit` keys starting with `prefix` that sort after `after` (all
    /// of them from the beginning when `after` is `None`), ascending, and
    /// whether more follow: a listing whose memory is bounded by `limit`.
    ///
    /// The default cuts the page out of [`list`](Backend::list); a backend
    /// with an ordered index should read only the page (see
    /// [`KeyPage::from_overfetch`]). The host never asks for `limit == 0`.
    fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<KeyPage, Error>> + Send {
        async move { Ok(KeyPage::cut(self.list(prefix).await?, after, limit)) }
    }

    /// Releases resources (flushes, closes connections, drops file locks).
    /// No other method is called after it.
    fn shutdown(&self) -> impl Future<Output = Result<(), Error>> + Send {
        async { Ok(()) }
    }

    /// State to hand to the instance replacing this one in a hot swap
    /// ([`Plugin::create_with_state`]). `None` (the default) means the new
    /// instance starts from the configuration alone, which is right for any
    /// backend whose data lives outside the process.
    fn export_state(&self) -> impl Future<Output = Result<Option<Vec<u8>>, Error>> + Send {
        async { Ok(None) }
    }
}
