//! Replays the fuzz corpus (`fuzz/corpus/<target>/`, seeds checked in, plus
//! whatever `make fuzz` found) through every parser of peer input, and then
//! a deterministic mutation fuzz of each seed (bit flips, byte overwrites
//! with boundary values, truncation, extension): none may panic, and each
//! target asserts the properties of what it accepts (see
//! `shmring::fuzzing`); every target must accept some inputs, or its
//! properties were never checked. 200 000 mutations per target by default
//! (what SECURITY.md says; `SHMRING_FUZZ_MUTATIONS` changes it). This is how
//! the fuzz targets run in `make test` (cargo-fuzz needs a nightly
//! toolchain; `make fuzz` runs them for real where one can be had).
//!
//! `cargo test -p shmring --test fuzz -- --ignored write_seeds` rewrites the
//! seed files from `shmring::fuzzing::seeds()`.

use std::path::PathBuf;

use shmring::fuzzing::{accepted, mutate, seeds, Rng, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn corpus_and_mutations_never_panic_and_keep_the_properties() {
    let mutations: usize = std::env::var("SHMRING_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut report = Vec::new();
    for (target, run) in TARGETS {
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir(target))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !inputs.is_empty(),
            "no corpus for {target} in {:?}",
            corpus_dir(target)
        );
        inputs.push(Vec::new());
        for input in &inputs {
            run(input);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
        for i in 0..mutations {
            let mut m = inputs[i % inputs.len()].clone();
            mutate(&mut rng, &mut m);
            run(&m);
        }
        let ok = accepted(target);
        report.push(format!(
            "{target}: {} corpus + {mutations} mutations, {ok} accepted (properties checked)",
            inputs.len()
        ));
        assert!(
            ok > 0,
            "{target} accepted no input: its properties went unchecked"
        );
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
#[ignore = "writes the seed corpus"]
fn write_seeds() {
    for (i, (target, bytes)) in seeds().into_iter().enumerate() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(format!("seed-{i:02}")), bytes).expect("seed");
    }
}
