//! Criterion bench of ring throughput: shmring (wake-ups on) beside rtrb and
//! shmem-ipc, two threads, u64 items, chunks of 1, 64 and 4096. The quick
//! side-by-side table with ratios comes from the `compare` runner; this gives
//! criterion's statistics and history for the same workloads.
//!
//! ```text
//! cargo bench -p shmring-benches --bench ring
//! ```

// The Unix-socket peer is only in the `compare` table.
#[allow(dead_code)]
#[path = "common/throughput.rs"]
mod throughput;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use throughput::{expected, Peer};

/// Items per iteration: enough to amortise the two thread spawns.
const ITEMS: u64 = 1 << 20;

fn rings(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_u64_two_threads");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for batch in [1usize, 64, 4096] {
        for peer in [Peer::Shmring, Peer::Rtrb, Peer::ShmemIpc] {
            group.bench_with_input(BenchmarkId::new(peer.name(), batch), &batch, |b, &batch| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (t, sum) = peer.run(ITEMS, batch);
                        assert_eq!(sum, expected(ITEMS));
                        total += t;
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, rings);
criterion_main!(benches);
