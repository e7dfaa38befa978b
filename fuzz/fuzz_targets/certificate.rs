//! libFuzzer entry of the `certificate` target: the body is [`certgate_fuzz::certificate::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::certificate::run(data));
