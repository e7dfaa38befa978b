//! libFuzzer entry of the `alb` target: the body is [`certgate_fuzz::alb::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::alb::run(data));
