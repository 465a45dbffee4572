//! Test fixture: the `local` plugin under a different version string, so a
//! hot swap between this library and the real one is observable.

use storage_local::{LocalBackend, LocalConfig, LocalPlugin};
use storage_plugin_api::{Error, Plugin};

/// `local`, version `<pkg>+v2`.
pub struct LocalV2;

impl Plugin for LocalV2 {
    type Config = LocalConfig;
    type Backend = LocalBackend;
    const NAME: &'static str = "local";
    const VERSION: &'static str = concat!(env!("CARGO_PKG_VERSION"), "+v2");
    const DESCRIPTION: &'static str = LocalPlugin::DESCRIPTION;

    fn validate(config: &LocalConfig) -> Result<(), Error> {
        LocalPlugin::validate(config)
    }
    async fn create(config: LocalConfig) -> Result<LocalBackend, Error> {
        LocalPlugin::create(config).await
    }
    async fn create_with_state(config: LocalConfig, state: Vec<u8>) -> Result<LocalBackend, Error> {
        LocalPlugin::create_with_state(config, state).await
    }
}

storage_plugin_api::export_plugin!(LocalV2);
