#![no_main]

// The property: storage_test_support::fuzz::check_plugin_config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| storage_test_support::fuzz::check_plugin_config(data));
