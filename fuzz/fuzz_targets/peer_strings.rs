#![no_main]
//! Fuzz target: see `gstshmring::fuzz_peer_string` (caps and tags strings a
//! `shmringsrc` receives from its peer).
libfuzzer_sys::fuzz_target!(|data: &[u8]| gstshmring::fuzz_peer_string(data));
