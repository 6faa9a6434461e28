//! Issue 20: the fds a source put into a `Poll` belong to the source. Safe
//! code can reach the wrapped endpoint through `DerefMut` and replace it
//! (closing its fds); the source must still never pass a closed fd number,
//! which the process may have reused for another registered file, to
//! `epoll_ctl`.
//!
//! One test in this binary: it frees an fd number and takes it again with
//! `dup3`, which must not race with other tests opening fds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use shmring::{channel, Config};
use shmring_mio::MioConsumer;

const SOURCE: Token = Token(1);
const OTHER: Token = Token(9);

fn eventfd() -> OwnedFd {
    // SAFETY: eventfd has no pointer arguments.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[test]
fn replacing_the_endpoint_cannot_make_the_source_remove_a_reused_fd_number() {
    let (_tx_a, rx_a) = channel::pair::<u64>(&Config::new(16)).expect("pair a");
    let (_tx_b, rx_b) = channel::pair::<u64>(&Config::new(16)).expect("pair b");
    let mut poll = Poll::new().expect("poll");
    let mut rx = MioConsumer::new(rx_a);
    poll.registry()
        .register(&mut rx, SOURCE, Interest::READABLE)
        .expect("register");
    let old_number = rx.as_raw_fd();

    // Safe code swaps the endpoint for another one and drops the old one: its
    // wake-up fd closes and its number is free.
    drop(std::mem::replace(&mut *rx, rx_b));

    // Another file takes that number and is registered with the same Poll.
    let other = eventfd();
    // SAFETY: dup3 onto `old_number`, which the drop above closed; this binary
    // runs no other test that could have taken it meanwhile.
    let r = unsafe { libc::dup3(other.as_raw_fd(), old_number, libc::O_CLOEXEC) };
    assert_eq!(r, old_number, "dup3: {}", std::io::Error::last_os_error());
    // SAFETY: `old_number` now holds our duplicate, which nothing else owns.
    let reused = unsafe { OwnedFd::from_raw_fd(old_number) };
    poll.registry()
        .register(
            &mut SourceFd(&reused.as_raw_fd()),
            OTHER,
            Interest::READABLE,
        )
        .expect("register the file at the reused number");

    // The source goes away while registered: its safety net deregisters what
    // it registered, which must not be the file now at `old_number`.
    drop(rx);

    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer to our eventfd.
    let n = unsafe { libc::write(other.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    assert_eq!(n, 8);
    let mut events = Events::with_capacity(8);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        seen = events.iter().any(|e| e.token() == OTHER);
    }
    assert!(
        seen,
        "the file registered at the reused fd number lost its registration"
    );
}
