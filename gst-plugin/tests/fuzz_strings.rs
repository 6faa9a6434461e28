//! Replays the `peer_strings` fuzz corpus (`fuzz/corpus/peer_strings/`) and
//! 200 000 mutations of it through what `shmringsrc` does with a caps or tags
//! string from the peer: nothing may panic or abort, and GStreamer may not
//! print a critical (this binary runs with `G_DEBUG=fatal-criticals`, so one
//! aborts it). `make fuzz` runs the same entry point under libFuzzer.

use std::path::PathBuf;

use shmring::fuzzing::{mutate, Rng};

#[test]
fn peer_strings_never_panic() {
    // Before GStreamer starts (the only test of this binary): a critical
    // aborts the process.
    std::env::set_var("G_DEBUG", "fatal-criticals");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/peer_strings");
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    assert!(inputs.len() >= 3, "seeds in {dir:?}");
    inputs.push(Vec::new());
    for input in &inputs {
        gstshmring::fuzz_peer_string(input);
    }
    let mut rng = Rng(0x005e_ed0f_cafe);
    for i in 0..200_000 {
        let mut m = inputs[i % inputs.len()].clone();
        mutate(&mut rng, &mut m);
        gstshmring::fuzz_peer_string(&m);
    }
}
