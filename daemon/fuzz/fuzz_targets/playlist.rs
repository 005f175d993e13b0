#![no_main]
//! Fuzz target: see chorus::fuzz::playlist.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chorus::fuzz::playlist(data));
