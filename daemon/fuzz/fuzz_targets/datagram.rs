#![no_main]
//! Fuzz target: see chorus::fuzz::datagram.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chorus::fuzz::datagram(data));
