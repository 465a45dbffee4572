//! Test fixture: a root module with the host's module name and version but a
//! different layout, as a plugin built against a changed `plugin-api` (here:
//! `create` takes an extra argument) would export. abi_stable must refuse it.

use abi_stable::{
    StableAbi, declare_root_module_statics, export_root_module,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RStr, RString},
};

/// The "other" interface.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = OtherModRef)))]
#[sabi(missing_field(panic))]
pub struct OtherMod {
    /// Same as the host's.
    pub api_version: RStr<'static>,
    /// Same as the host's.
    pub name: RStr<'static>,
    /// Same as the host's.
    pub version: RStr<'static>,
    /// Same as the host's.
    pub description: RStr<'static>,
    /// Different: takes a number instead of a JSON string.
    #[sabi(last_prefix_field)]
    pub validate_config: extern "C" fn(config: u64) -> u64,
}

impl RootModule for OtherModRef {
    declare_root_module_statics! {OtherModRef}
    const BASE_NAME: &'static str = "storage_plugin";
    const NAME: &'static str = "storage plugin";
    // The same version the host expects, so only the layout check can catch it.
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.1.0");
}

extern "C" fn validate(x: u64) -> u64 {
    x
}

/// The exported root module.
#[export_root_module]
pub fn get_library() -> OtherModRef {
    OtherMod {
        api_version: "0.1.0".into(),
        name: "other".into(),
        version: "0.1.0".into(),
        description: "built against a different interface".into(),
        validate_config: validate,
    }
    .leak_into_prefix()
}

/// Unused; keeps RString referenced like a real plugin would.
pub fn unused() -> RString {
    RString::new()
}
