#![no_main]

// The property: storage_test_support::fuzz::check_http_request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| storage_test_support::fuzz::check_http_request(data));
