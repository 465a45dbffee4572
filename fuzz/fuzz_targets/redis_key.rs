#![no_main]

// The property: storage_fuzz_checks::check_redis_key.
libfuzzer_sys::fuzz_target!(|data: &[u8]| storage_fuzz_checks::check_redis_key(data));
