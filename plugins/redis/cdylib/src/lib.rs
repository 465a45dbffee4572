//! The `redis` storage plugin, exported as a dynamic library.
storage_plugin_api::export_plugin!(storage_redis::RedisPlugin);
