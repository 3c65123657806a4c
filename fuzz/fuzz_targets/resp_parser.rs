//! Fuzz target: the invariants of `wspush::fuzzing::check_resp_parser` on arbitrary input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wspush::fuzzing::check_resp_parser(data));
