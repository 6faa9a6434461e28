//! Issue 3, test 1: many producer processes feed one mio loop; every item
//! arrives in order, every exit is seen, every resource is released.

mod common;

use std::time::Duration;

use shmring::SignalKind;

child_test!();

fn run(signal: SignalKind, producers: usize, items: u64) {
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("many");
    let config = common::config(signal, 1024);
    let mut listener = common::bind(&path);
    let fds_before = common::fd_count();
    let maps_before = common::shm_mappings();

    let children: Vec<_> = (0..producers)
        .map(|_| {
            common::spawn_at(
                "producer",
                &path,
                &[common::signal_name(signal).into(), items.to_string()],
            )
        })
        .collect();
    let pids: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();

    let finished = common::consume(
        &mut listener,
        &config,
        &common::LoopOpts {
            expect: producers,
            budget: 4096,
            stall: Duration::from_secs(5),
            overall: Duration::from_secs(40),
        },
    );
    for c in children {
        common::wait_ok(c, "producer");
    }

    assert_eq!(finished.len(), producers);
    for f in &finished {
        assert!(pids.contains(&f.pid), "unknown pid {}", f.pid);
        assert_eq!(f.items, items, "pid {}: items", f.pid);
        assert!(f.in_order, "pid {}: items out of order", f.pid);
    }
    let mut seen: Vec<i32> = finished.iter().map(|f| f.pid).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), producers, "each producer's exit seen once");

    assert_eq!(common::fd_count(), fds_before, "fds back to baseline");
    assert_eq!(common::shm_mappings(), maps_before, "mappings released");
    drop(listener);
    assert!(!path.exists(), "socket file removed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ten_producers_eventfd() {
    run(SignalKind::EventFd, 10, 200_000);
}

#[test]
fn eight_producers_pipe() {
    run(SignalKind::Pipe, 8, 100_000);
}
