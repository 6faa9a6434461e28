//! Reproductions of core issues that the mio loop cannot work around. Ignored
//! until core is fixed: `cargo test -p shmring-mio --test known_issues -- --ignored`.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::mpsc;
use std::time::Duration;

use shmring::{channel, Config};

/// A hostile producer clears `O_NONBLOCK` on the shared "space" eventfd (file
/// flags belong to the open file, which both processes share) and saturates
/// its counter; then it announces a sleep in shared memory. The event loop's
/// next release of a slot calls `Signal::notify`, whose eventfd `write` then
/// blocks forever, and with it the whole loop and every other peer it serves.
/// (core/src/signal.rs documents this caveat; `SignalKind::Pipe` is immune.)
#[test]
#[ignore = "core issue: eventfd notify can block on a hostile peer's saturated counter"]
fn saturated_blocking_eventfd_blocks_the_consumer() {
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(2)).unwrap();
    tx.try_push(1).unwrap();
    tx.try_push(2).unwrap();
    let fd = tx.as_fd().as_raw_fd();
    // SAFETY: fcntl and an 8-byte write from a live local on an open fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        let max: u64 = 0xffff_ffff_ffff_fffe;
        assert_eq!(libc::write(fd, (&max as *const u64).cast(), 8), 8);
    }
    // What a hostile producer does by writing an odd value to its sleep word.
    assert!(tx.prepare_sleep().unwrap());
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        // The event loop pops one item: the release wakes the "sleeping" producer.
        let v = rx.try_pop();
        let _ = done.send(v.map_err(|e| e.to_string()));
    });
    let r = finished.recv_timeout(Duration::from_secs(2));
    assert!(
        r.is_ok(),
        "Consumer::try_pop blocked for 2 s inside the eventfd write of Signal::notify"
    );
}
