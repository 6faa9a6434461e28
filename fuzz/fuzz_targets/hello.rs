#![no_main]
//! Fuzz target: see `shmring::fuzzing::hello`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring::fuzzing::hello(data));
