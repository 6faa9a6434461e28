#![no_main]
//! Fuzz target: see `shmring::fuzzing::link`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring::fuzzing::link(data));
