#![no_main]

// The property: storage_fuzz_checks::check_http_request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| storage_fuzz_checks::check_http_request(data));
