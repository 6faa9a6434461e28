#![no_main]
//! Fuzz target: see `shmring::fuzzing::welcome`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring::fuzzing::welcome(data));
