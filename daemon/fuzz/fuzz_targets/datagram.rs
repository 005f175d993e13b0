#![no_main]
//! Fuzz target: see chorus::wire::fuzz::datagram.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chorus::wire::fuzz::datagram(data));
