#![no_main]
//! Fuzz target: see `shmring::fuzzing::descriptor`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring::fuzzing::descriptor(data));
