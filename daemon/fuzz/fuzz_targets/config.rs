#![no_main]
//! Fuzz target: see chorus::fuzz::config.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chorus::fuzz::config(data));
