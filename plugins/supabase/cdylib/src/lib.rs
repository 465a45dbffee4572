//! The `supabase` storage plugin as a loadable library: drop the built
//! `libstorage_supabase_plugin.so` (`.dylib`, `.dll`) into the host's plugins
//! directory. The logic lives in the `storage-supabase` crate.

storage_plugin_api::export_plugin!(storage_supabase::SupabasePlugin);
