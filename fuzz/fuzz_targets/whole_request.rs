//! libFuzzer entry of the `whole_request` target: the body is [`certgate_fuzz::whole_request::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::whole_request::run(data));
