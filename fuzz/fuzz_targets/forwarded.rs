//! libFuzzer entry of the `forwarded` target: the body is [`certgate_fuzz::forwarded::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::forwarded::run(data));
