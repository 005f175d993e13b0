#![no_main]
//! Fuzz target: see chorus::controller::queue::fuzz_playlist.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chorus::controller::queue::fuzz_playlist(data));
