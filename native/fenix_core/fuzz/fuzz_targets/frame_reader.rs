//! Fuzz target: see `fenix_core::fuzz_api::frame_reader` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fenix_core::fuzz_api::frame_reader(data));
