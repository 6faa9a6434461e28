#![no_main]
//! Fuzz target: see `shmring::fuzzing::ring_header`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring::fuzzing::ring_header(data));
