//! Side-by-side ring throughput: shmring vs rtrb vs shmem-ipc vs a Unix
//! socket vs `std::sync::mpsc`, two threads, u64 items, batches of 1, 64 and 4096, measured in the
//! same run. Prints a markdown table with ratios and writes it to
//! `target/bench-compare.md`.
//!
//! ```text
//! cargo bench -p shmring-benches --bench compare            # full (about a minute)
//! cargo bench -p shmring-benches --bench compare -- --smoke # seconds: proves it runs
//! ```

#[path = "common/throughput.rs"]
mod throughput;

use shmring_benches::{machine, median, mps, write_report, Table};
use throughput::{expected, Peer, CAPACITY};

const BATCHES: [usize; 3] = [1, 64, 4096];
const PEERS: [Peer; 5] = [
    Peer::Shmring,
    Peer::Rtrb,
    Peer::ShmemIpc,
    Peer::UnixSocket,
    Peer::Mpsc,
];

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let reps = if smoke { 1 } else { 5 };
    let mut out = String::new();
    out.push_str(&format!(
        "Ring throughput, two threads, u64 items, capacity {CAPACITY}, median of {reps} run(s){}\n\n",
        if smoke { " (SMOKE: tiny workload, figures meaningless)" } else { "" }
    ));
    out.push_str(&format!("Machine: {}\n\n", machine()));
    let mut table = Table::new(&[
        "batch",
        "shmring",
        "rtrb",
        "shmem-ipc",
        "unix socket",
        "std mpsc",
        "shmring / rtrb",
        "shmring / shmem-ipc",
    ]);
    let mut notes = Vec::new();
    for batch in BATCHES {
        // Enough items for ~0.3 s or more of the fastest peer; slower peers run
        // fewer items (a rate does not depend on how many were counted).
        let n_fast: u64 = if smoke {
            20_000
        } else {
            match batch {
                1 => 20_000_000,
                64 => 200_000_000,
                _ => 400_000_000,
            }
        };
        let mut rates = Vec::new();
        for peer in PEERS {
            let n = match peer {
                Peer::Shmring | Peer::Rtrb => n_fast,
                _ if batch == 1 => (n_fast / 10).max(1000),
                _ => (n_fast / 4).max(1000),
            };
            let mut r = Vec::new();
            for _ in 0..reps {
                let (t, sum) = peer.run(n, batch);
                assert_eq!(sum, expected(n), "{} lost or mangled items", peer.name());
                r.push(n as f64 / t.as_secs_f64());
            }
            rates.push(median(&mut r));
        }
        let (s, rt, si) = (rates[0], rates[1], rates[2]);
        table.row(&[
            batch.to_string(),
            mps(s),
            mps(rt),
            mps(si),
            mps(rates[3]),
            mps(rates[4]),
            format!("{:.2}x", s / rt),
            format!("{:.1}x", s / si),
        ]);
        let target = match batch {
            1 => format!(
                "target: >= 1.00x rtrb, >= 10x shmem-ipc: {}",
                verdict(s >= rt && s >= 10.0 * si)
            ),
            64 => format!("target: >= 1.00x rtrb: {}", verdict(s >= rt)),
            _ => format!("target: within 5% of rtrb: {}", verdict(s >= 0.95 * rt)),
        };
        notes.push(format!("- batch {batch}: {target}"));
    }
    out.push_str(table.as_str());
    out.push('\n');
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    print!("{out}");
    write_report("bench-compare.md", &out);
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}
