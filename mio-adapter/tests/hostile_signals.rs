//! Hostile peers abusing the wake-up fds they share with the loop (was
//! `known_issues.rs`: with eventfd signals, a cleared `O_NONBLOCK` and a
//! saturated counter blocked the loop in `Signal::notify`). With the default
//! socket signals, nothing a peer does to its fds can block the loop.

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::sync::mpsc;
use std::time::Duration;

use shmring::{channel, Config, SignalKind};

child_test!();

/// In one process: the hostile producer clears `O_NONBLOCK` on the wake-up
/// fd it holds, writes eventfd-style counter values into it, and announces a
/// sleep before every release of the loop (which then sends a wake-up it
/// never reads). 10 000 releases never block.
#[test]
fn flag_and_counter_abuse_never_blocks_the_consumer() {
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(2)).unwrap();
    let fd = tx.as_fd().as_raw_fd();
    // SAFETY: fcntl, and 8-byte writes from a live local on an open fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        let max: u64 = 0xffff_ffff_ffff_fffe;
        // On a socket this goes nowhere (the loop's end refuses it).
        let _ = libc::send(
            fd,
            (&max as *const u64).cast(),
            8,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
    }
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..10_000u64 {
            tx.try_push(i).unwrap();
            // What a hostile producer does by writing an odd value to its
            // sleep word.
            let _ = tx.prepare_sleep().unwrap();
            // The event loop pops one item: the release wakes the
            // "sleeping" producer.
            if let Err(e) = rx.try_pop() {
                let _ = done.send(Err(e.to_string()));
                return;
            }
        }
        let _ = done.send(Ok(()));
    });
    let r = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("Consumer::try_pop blocked inside Signal::notify");
    assert_eq!(r, Ok(()));
}

/// Across processes: a hostile producer written against the wire protocol
/// abuses both its signal fds and announces a sleep after every commit for
/// 2 s, next to an honest bursty producer on the same loop. The loop takes
/// every item of both in order and sees both hang up: it never blocked.
#[test]
fn hostile_producer_process_cannot_block_the_loop() {
    let _serial = common::serial();
    let signal = SignalKind::default();
    let (dir, path) = common::temp_socket("abuse");
    let config = common::config(signal, 1024);
    let mut listener = common::bind(&path);
    let abuser = common::spawn_at(
        "abuser",
        &path,
        &[common::signal_name(signal).into(), "2".into()],
    );
    let (honest, honest_total) = common::spawn_bursty(&path, signal, 1024, (7, 600, 200));
    let (abuser_pid, honest_pid) = (abuser.id() as i32, honest.id() as i32);
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let f = common::consume(
            &mut listener,
            &config,
            &common::LoopOpts {
                expect: 2,
                budget: 4096,
                stall: Duration::from_secs(5),
                overall: Duration::from_secs(60),
            },
        );
        let _ = done.send(f);
    });
    // A hang guard: the loop panics on a stall it can see; one blocked in a
    // system call sees nothing.
    let finished = finished
        .recv_timeout(Duration::from_secs(90))
        .expect("the loop blocked");
    common::wait_ok(abuser, "abuser");
    common::wait_ok(honest, "honest producer");
    let by_pid = |pid| finished.iter().find(|f| f.pid == pid).expect("finished");
    let (a, h) = (by_pid(abuser_pid), by_pid(honest_pid));
    assert!(a.in_order && a.items > 0, "{a:?}");
    assert!(h.in_order && h.items == honest_total, "{h:?}");
    let _ = std::fs::remove_dir_all(dir);
}
