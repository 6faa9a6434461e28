//! Issue 3, test 2: bursts and idle gaps interleaved for many rounds never
//! stall the loop (every gap makes the consumer sleep, every burst must wake
//! it), with both signal kinds and a small budget (fairness path).

mod common;

use std::time::Duration;

use shmring::SignalKind;

child_test!();

fn run(signal: SignalKind, producers: u64, rounds: usize, max_burst: u64, capacity: usize) {
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("bursts");
    let config = common::config(signal, capacity);
    let mut listener = common::bind(&path);
    let mut expected = std::collections::HashMap::new();
    let children: Vec<_> = (0..producers)
        .map(|i| {
            let seed = 0x5eed_0000 + i * 7919 + capacity as u64;
            let (c, total) =
                common::spawn_bursty(&path, signal, capacity, (seed, rounds, max_burst));
            expected.insert(c.id() as i32, total);
            c
        })
        .collect();

    let finished = common::consume(
        &mut listener,
        &config,
        &common::LoopOpts {
            expect: producers as usize,
            budget: 700,
            // A gap is at most 2 ms: 2 s without an item is a lost wake-up.
            stall: Duration::from_secs(2),
            overall: Duration::from_secs(30),
        },
    );
    for c in children {
        common::wait_ok(c, "bursty producer");
    }
    assert_eq!(finished.len(), producers as usize);
    for f in &finished {
        assert_eq!(Some(&f.items), expected.get(&f.pid), "pid {}", f.pid);
        assert!(f.in_order, "pid {}: out of order", f.pid);
        assert_eq!(
            f.wake.throttles, 0,
            "honest producer throttled: {:?}",
            f.wake
        );
        assert!(f.wake.wakeups > 0);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bursts_and_gaps_eventfd() {
    run(SignalKind::EventFd, 3, 250, 3000, 512);
}

#[test]
fn bursts_and_gaps_pipe() {
    run(SignalKind::Pipe, 2, 200, 3000, 512);
}

#[test]
fn tiny_bursts_tiny_ring() {
    // Bursts of 1..=3 items into a 2-slot ring: the sleep/wake race on every item.
    run(SignalKind::EventFd, 2, 400, 3, 2);
}
