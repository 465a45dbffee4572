//! The ABI-stable interface between the storage host and its plugins.
//!
//! A plugin is a `cdylib` that implements [`Plugin`] and [`Backend`] in plain
//! async Rust and calls [`export_plugin!`] once:
//!
//! ```ignore
//! storage_plugin_api::export_plugin!(MyPlugin);
//! ```
//!
//! The host loads the library, abi_stable checks that its interface matches
//! (abi_stable version, this crate's version, the layout of every type that
//! crosses), and the plugin's backends are then driven through the ABI-stable
//! types that [`export_plugin!`] generates from your implementation.
//!
//! Across the boundary only `abi_stable` types travel (`RString`, `RVec<u8>`,
//! `RResult`, ...); futures travel as [`async_ffi::FfiFuture`], so a plugin never
//! depends on the host's async runtime.
//!
//! A host that links a plugin in statically (no library) hands
//! [`module_of::<P>()`](module_of) to its registry: the same interface, without
//! `dlopen`.
//!
//! The raw boundary types (the root module, the type-erased backend, the
//! future aliases) live in a module hidden from this documentation: they are
//! the host's and the generated glue's business, change with the ABI, and are
//! no part of the API a plugin author programs against.

#![warn(missing_docs)]

mod error;
mod export;
// The raw ABI (root module, type-erased backend, future aliases): public only
// because the code `export_plugin!` generates and the host's loader name it.
// Hidden from the documentation, and no part of the plugin author's API.
#[doc(hidden)]
pub mod ffi;
mod key;
mod page;
mod plugin;
mod secret;

pub use error::{Error, ErrorKind};
pub use export::{module_of, panic_message};
pub use key::ShownKey;
pub use page::KeyPage;
pub use plugin::{Backend, Plugin};
pub use secret::{Secret, is_secret_param, redact_url};

/// The version of this crate, recorded in every plugin built against it.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Re-exports used by [`export_plugin!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
    pub use serde;
}

/// Exports `$plugin` (a type implementing [`Plugin`]) as this library's root module.
///
/// Call it once, at the root of a `crate-type = ["cdylib"]` crate. A crate that
/// is also linked statically into a host must not call it (two plugins linked
/// into one binary would export the same symbol): keep the call in a separate
/// cdylib crate, as the plugins shipped with the host do.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // What abi_stable's `#[export_root_module]` expands to, spelled with
        // `$crate` paths so plugin crates need not depend on abi_stable.
        // SAFETY: the symbol name is abi_stable's root-module loader name
        // (checked by a test in storage-plugin-api), and the header is built by
        // abi_stable's own constructor from our root module type, with layout
        // checking enabled.
        /// The plugin's root module, as abi_stable's loader looks it up.
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static _STORAGE_PLUGIN_ROOT_MODULE: $crate::__private::abi_stable::library::LibHeader = {
            extern "C" fn __root_module() -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(
                    $crate::module_of::<$plugin> as fn() -> $crate::ffi::PluginModRef,
                )
            }
            // SAFETY: see above; `__root_module` returns the module of type `PluginModRef`.
            unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<$crate::ffi::PluginModRef>(
                    __root_module,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_symbol_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
