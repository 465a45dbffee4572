//! Test fixture: a "new version" of the `local` plugin whose `create` panics,
//! to check that a hot swap to it changes nothing.

use storage_local::{LocalBackend, LocalConfig, LocalPlugin};
use storage_plugin_api::{Error, Plugin};

/// `local`, version `<pkg>+broken`.
pub struct LocalBroken;

impl Plugin for LocalBroken {
    type Config = LocalConfig;
    type Backend = LocalBackend;
    const NAME: &'static str = "local";
    const VERSION: &'static str = concat!(env!("CARGO_PKG_VERSION"), "+broken");
    const DESCRIPTION: &'static str = LocalPlugin::DESCRIPTION;

    async fn create(_config: LocalConfig) -> Result<LocalBackend, Error> {
        panic!("local+broken: create always panics");
    }
}

storage_plugin_api::export_plugin!(LocalBroken);
