//! Fuzz target: see `fenix_core::fuzz_api::longpoll_body` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fenix_core::fuzz_api::longpoll_body(data));
