//! libFuzzer entry of the `xfcc` target: the body is [`certgate_fuzz::xfcc::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::xfcc::run(data));
