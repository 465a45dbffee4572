//! The ABI-stable types the host and a plugin library share.
//!
//! Internal, and hidden from the documentation: used by the code
//! [`export_plugin!`] generates and by the host's loader. Plugin authors
//! implement [`Plugin`](crate::Plugin) and [`Backend`](crate::Backend) and
//! never name these types; they change with the ABI, outside semver.
//!
//! Everything here is checked by abi_stable when a library is loaded: the
//! layout of [`PluginMod`] and of every type reachable from it must match what
//! the host was built with, or loading fails with a report instead of undefined
//! behaviour. Plugin authors never touch these types; [`export_plugin!`] builds
//! them from a [`Plugin`](crate::Plugin) implementation.
//!
//! [`export_plugin!`]: crate::export_plugin

// The code `#[sabi_trait]` generates puts impls inside a const block.
#![allow(non_local_definitions)]

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
};
use async_ffi::{BorrowingFfiFuture, FfiFuture};

use crate::Error;

/// A future returned across the boundary, resolving to a result.
pub type FfiResult<T> = FfiFuture<RResult<T, Error>>;

/// A future returned by a backend method: it borrows the backend, so a call
/// costs no reference-count traffic (which two threads would contend on).
pub type FfiBorrowed<'a, T> = BorrowingFfiFuture<'a, RResult<T, Error>>;

/// A backend instance as seen through the boundary.
///
/// Methods take owned `R*` values; the returned futures borrow only the
/// backend, and are `Send` so the host's worker threads can move them.
#[sabi_trait]
pub trait FfiBackend: Send + Sync {
    /// See [`Backend::get`](crate::Backend::get).
    fn get(&self, key: RString) -> FfiBorrowed<'_, ROption<RVec<u8>>>;
    /// See [`Backend::put`](crate::Backend::put).
    fn put(&self, key: RString, value: RVec<u8>) -> FfiBorrowed<'_, ()>;
    /// See [`Backend::delete`](crate::Backend::delete).
    fn delete(&self, key: RString) -> FfiBorrowed<'_, ()>;
    /// See [`Backend::list`](crate::Backend::list).
    fn list(&self, prefix: RString) -> FfiBorrowed<'_, RVec<RString>>;
    /// See [`Backend::shutdown`](crate::Backend::shutdown).
    #[sabi(last_prefix_field)]
    fn shutdown(&self) -> FfiBorrowed<'_, ()>;

    // Methods below were added after the first version of the interface: they
    // have defaults, which is what a backend from an older plugin answers.

    /// See [`Backend::export_state`](crate::Backend::export_state).
    fn export_state(&self) -> FfiBorrowed<'_, ROption<RVec<u8>>> {
        async_ffi::FutureExt::into_ffi(async { RResult::ROk(ROption::RNone) })
    }

    /// See [`Backend::list_page`](crate::Backend::list_page). A backend from
    /// a plugin built before paged listing answers
    /// [`LIST_PAGE_UNSUPPORTED`]; the host then cuts the page out of `list`.
    fn list_page(
        &self,
        prefix: RString,
        after: ROption<RString>,
        limit: u64,
    ) -> FfiBorrowed<'_, FfiKeyPage> {
        let _ = (prefix, after, limit);
        async_ffi::FutureExt::into_ffi(async {
            RResult::RErr(Error::unsupported(LIST_PAGE_UNSUPPORTED))
        })
    }
}

/// The message of the `Unsupported` error a backend without
/// [`FfiBackend::list_page`] answers (the host falls back to `list`).
pub const LIST_PAGE_UNSUPPORTED: &str = "list_page is not implemented by this plugin's build";

/// [`KeyPage`](crate::KeyPage) across the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FfiKeyPage {
    /// The page's keys, ascending.
    pub keys: RVec<RString>,
    /// Whether more keys follow the last one.
    pub more: bool,
}

/// An owned, type-erased backend instance.
pub type BackendBox = FfiBackend_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
///
/// It is a prefix type: fields after the one marked `last_prefix_field` may be
/// absent in libraries built against an older `plugin-api`, and the host reads
/// them through accessors returning `Option`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The version of `storage-plugin-api` the plugin was built against.
    pub api_version: RStr<'static>,
    /// The plugin's name, e.g. `"local"`.
    pub name: RStr<'static>,
    /// The plugin's own version.
    pub version: RStr<'static>,
    /// One line describing the plugin.
    pub description: RStr<'static>,
    /// Checks a JSON configuration without side effects.
    pub validate_config: extern "C" fn(config: RStr<'_>) -> RResult<(), Error>,
    /// Creates a backend from a JSON configuration.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(config: RString) -> FfiResult<BackendBox>,

    /// Creates a backend from a JSON configuration and the state exported by
    /// the instance it replaces (hot swap). Absent in plugins built before it
    /// existed; the host then falls back to `create`.
    #[sabi(missing_field(option))]
    pub create_with_state: extern "C" fn(config: RString, state: RVec<u8>) -> FfiResult<BackendBox>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}

    const BASE_NAME: &'static str = "storage_plugin";
    const NAME: &'static str = "storage plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
