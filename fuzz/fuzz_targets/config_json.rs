//! libFuzzer entry of the `config_json` target: the body is [`certgate_fuzz::config_json::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::config_json::run(data));
