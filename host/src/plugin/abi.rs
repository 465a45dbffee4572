//! The adapter between the ABI-stable interface and the native traits.
//!
//! Both plugins loaded from libraries and the built-in plugins go through
//! here, so the manager runs every plugin through one code path.

use abi_stable::std_types::{RResult, RStr, RString, RVec};
use async_trait::async_trait;
use storage_plugin_api::ErrorKind;
use storage_plugin_api::ffi::{BackendBox, LIST_PAGE_UNSUPPORTED, PluginModRef};

use super::{PluginError, PluginSource, StoragePlugin};
use crate::config::StorageConfig;
use crate::storage::{KeyPage, Storage, StorageError};

/// A plugin reached through its ABI-stable root module.
#[derive(Clone)]
pub struct AbiPlugin {
    module: PluginModRef,
    source: PluginSource,
}

impl AbiPlugin {
    /// Wraps a root module (from [`storage_plugin_api::module_of`] or a loaded library).
    pub fn new(module: PluginModRef, source: PluginSource) -> Self {
        AbiPlugin { module, source }
    }

    fn json_config(&self, config: &StorageConfig) -> Result<String, PluginError> {
        if config.plugin_name() != self.name() {
            return Err(PluginError::InvalidConfig(
                self.name().to_string(),
                format!(
                    "this configuration is for plugin '{}', not '{}'",
                    config.plugin_name(),
                    self.name()
                ),
            ));
        }
        Ok(config.plugin_config().to_string())
    }

    fn create_error(&self, e: storage_plugin_api::Error) -> PluginError {
        match e.kind() {
            storage_plugin_api::ErrorKind::InvalidConfig => {
                PluginError::InvalidConfig(self.name().to_string(), e.message().to_string())
            }
            _ => PluginError::InitializationFailed(self.name().to_string(), e.to_string()),
        }
    }

    fn wrap(&self, backend: BackendBox) -> Box<dyn Storage + Send + Sync> {
        Box::new(AbiStorage { backend })
    }
}

#[async_trait]
impl StoragePlugin for AbiPlugin {
    fn name(&self) -> &'static str {
        self.module.name().as_str()
    }

    fn description(&self) -> &'static str {
        self.module.description().as_str()
    }

    fn version(&self) -> &str {
        self.module.version().as_str()
    }

    fn api_version(&self) -> Option<&str> {
        Some(self.module.api_version().as_str())
    }

    fn source(&self) -> PluginSource {
        self.source.clone()
    }

    fn validate_config(&self, config: &StorageConfig) -> Result<(), PluginError> {
        let json = self.json_config(config)?;
        match (self.module.validate_config())(RStr::from_str(&json)) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(self.create_error(e)),
        }
    }

    async fn create(
        &self,
        config: &StorageConfig,
    ) -> Result<Box<dyn Storage + Send + Sync>, PluginError> {
        let json = self.json_config(config)?;
        match (self.module.create())(RString::from(json)).await {
            RResult::ROk(b) => Ok(self.wrap(b)),
            RResult::RErr(e) => Err(self.create_error(e)),
        }
    }

    async fn create_with_state(
        &self,
        config: &StorageConfig,
        state: Vec<u8>,
    ) -> Result<Box<dyn Storage + Send + Sync>, PluginError> {
        // Plugins built before the state hand-over existed lack the field.
        let Some(create_with_state) = self.module.create_with_state() else {
            return self.create(config).await;
        };
        let json = self.json_config(config)?;
        match create_with_state(RString::from(json), RVec::from(state)).await {
            RResult::ROk(b) => Ok(self.wrap(b)),
            RResult::RErr(e) => Err(self.create_error(e)),
        }
    }
}

/// A backend instance reached through the ABI.
struct AbiStorage {
    backend: BackendBox,
}

fn result<T>(r: RResult<T, storage_plugin_api::Error>) -> Result<T, StorageError> {
    r.into_result().map_err(StorageError::from)
}

#[async_trait]
impl Storage for AbiStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let v = result(self.backend.get(RString::from(key)).await)?;
        Ok(v.into_option().map(RVec::into_vec))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        result(
            self.backend
                .put(RString::from(key), RVec::from(value))
                .await,
        )
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        result(self.backend.delete(RString::from(key)).await)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let keys = result(self.backend.list(RString::from(prefix)).await)?;
        Ok(keys.into_iter().map(RString::into_string).collect())
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StorageError> {
        let answer = self
            .backend
            .list_page(
                RString::from(prefix),
                after.map(RString::from).into(),
                limit as u64,
            )
            .await;
        match answer {
            RResult::ROk(page) => Ok(KeyPage {
                keys: page.keys.into_iter().map(RString::into_string).collect(),
                more: page.more,
            }),
            // A plugin built before paged listing: cut the page out of `list`.
            RResult::RErr(e)
                if e.kind() == ErrorKind::Unsupported && e.message() == LIST_PAGE_UNSUPPORTED =>
            {
                Ok(KeyPage::cut(self.list(prefix).await?, after, limit))
            }
            RResult::RErr(e) => Err(e.into()),
        }
    }

    async fn shutdown(&self) -> Result<(), StorageError> {
        result(self.backend.shutdown().await)
    }

    async fn export_state(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let v = result(self.backend.export_state().await)?;
        Ok(v.into_option().map(RVec::into_vec))
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{RBox, ROption};
    use async_ffi::FutureExt as _;
    use storage_plugin_api::ffi::{FfiBackend, FfiBackend_TO, FfiBorrowed};

    use super::*;

    /// A backend as a plugin built before `list_page` existed exports it:
    /// only the first methods, so `list_page` is the interface's default.
    struct OldBackend(Vec<&'static str>);

    fn ready<T: Send + 'static>(v: T) -> FfiBorrowed<'static, T> {
        async move { RResult::ROk(v) }.into_ffi()
    }

    impl FfiBackend for OldBackend {
        fn get(&self, _: RString) -> FfiBorrowed<'_, ROption<RVec<u8>>> {
            ready(ROption::RNone)
        }
        fn put(&self, _: RString, _: RVec<u8>) -> FfiBorrowed<'_, ()> {
            ready(())
        }
        fn delete(&self, _: RString) -> FfiBorrowed<'_, ()> {
            ready(())
        }
        fn list(&self, prefix: RString) -> FfiBorrowed<'_, RVec<RString>> {
            let keys = self
                .0
                .iter()
                .filter(|k| k.starts_with(prefix.as_str()))
                .map(|k| RString::from(*k))
                .collect();
            ready(keys)
        }
        fn shutdown(&self) -> FfiBorrowed<'_, ()> {
            ready(())
        }
    }

    #[tokio::test]
    async fn a_plugin_without_list_page_is_paged_from_its_list() {
        let storage = AbiStorage {
            backend: FfiBackend_TO::from_ptr(
                RBox::new(OldBackend(vec!["a/1", "a/2", "a/3", "b/1"])),
                TD_Opaque,
            ),
        };
        let first = storage.list_page("a/", None, 2).await.unwrap();
        assert_eq!(first.keys, ["a/1", "a/2"]);
        assert_eq!(first.next_after(), Some("a/2"));
        let second = storage.list_page("a/", Some("a/2"), 2).await.unwrap();
        assert_eq!(second.keys, ["a/3"]);
        assert!(!second.more);
    }
}
