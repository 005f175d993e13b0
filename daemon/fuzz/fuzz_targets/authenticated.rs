#![no_main]
//! Fuzz target: see chorus::fuzz::authenticated.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chorus::fuzz::authenticated(data));
