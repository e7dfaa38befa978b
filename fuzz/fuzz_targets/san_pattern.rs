//! libFuzzer entry of the `san_pattern` target: the body is [`certgate_fuzz::san_pattern::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::san_pattern::run(data));
