//! `MioListener`: a silent client never blocks the loop, and is dropped after
//! the handshake timeout; bad peers are reported per peer; the number of
//! pending handshakes is bounded.

mod common;

use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use shmring::handshake;
use shmring_mio::{Error, Readiness};

child_test!();

const LISTENER: Token = Token(0);

#[test]
fn silent_client_does_not_block_the_loop() {
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("silent");
    let config = common::config(shmring::SignalKind::EventFd, 64);
    let mut listener = common::bind(&path);
    listener.set_handshake_timeout(Duration::from_millis(300));
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let fds_before = common::fd_count();

    // A client that connects and says nothing.
    let p = path.clone();
    let silent = std::thread::spawn(move || {
        let fd = handshake::connect(&p, Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        drop(fd);
    });
    // A client of the wrong type.
    let p = path.clone();
    let c2 = config.clone();
    let wrong = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        handshake::connect_producer::<u32>(&p, &c2).unwrap_err()
    });
    // A real producer, after the silent one.
    let p = path.clone();
    let c3 = config.clone();
    let good = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        let mut tx = handshake::connect_producer::<u64>(&p, &c3).unwrap();
        let took = t.elapsed();
        for i in 0..1000u64 {
            tx.push_blocking(i, Some(Duration::from_secs(5))).unwrap();
        }
        took
    });

    let mut events = Events::with_capacity(16);
    let mut rx = None;
    let (mut timeouts, mut refused, mut got, mut closed) = (0, 0, 0u64, false);
    let t0 = Instant::now();
    let mut timeout_at = None;
    while !(closed && timeouts == 1 && refused == 1) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "loop did not finish"
        );
        let mut timeout = Duration::from_millis(50);
        if let Some(d) = listener.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(Instant::now()));
        }
        poll.poll(&mut events, Some(timeout)).unwrap();
        let listener_due = events.iter().any(|e| e.token() == LISTENER)
            || listener
                .next_deadline()
                .is_some_and(|d| d <= Instant::now());
        if listener_due {
            for r in listener
                .accept_consumers::<u64>(poll.registry(), &config)
                .unwrap()
            {
                match r {
                    Ok(acc) => {
                        let mut c = acc.endpoint;
                        poll.registry()
                            .register(&mut c, Token(1), Interest::READABLE)
                            .unwrap();
                        rx = Some(c);
                    }
                    Err(Error::HandshakeTimeout { .. }) => {
                        timeouts += 1;
                        timeout_at = Some(t0.elapsed());
                    }
                    Err(Error::Shmring(shmring::Error::Protocol(m))) => {
                        assert!(m.contains("type mismatch"), "{m}");
                        refused += 1;
                    }
                    Err(e) => panic!("unexpected accept error {e}"),
                }
            }
        }
        if let Some(c) = rx.as_mut() {
            let st = c
                .drain_with(poll.registry(), |items| {
                    for &x in items {
                        assert_eq!(x, got);
                        got += 1;
                    }
                })
                .unwrap();
            if st == Readiness::Closed {
                closed = true;
                poll.registry().deregister(c).unwrap();
                rx = None;
            }
        }
    }
    assert_eq!(got, 1000);
    let took = good.join().unwrap();
    assert!(took < Duration::from_millis(250), "handshake took {took:?}");
    let e = wrong.join().unwrap();
    assert!(matches!(e, shmring::Error::PeerRefused(_)), "{e}");
    let timeout_at = timeout_at.unwrap();
    assert!(
        timeout_at >= Duration::from_millis(300) && timeout_at < Duration::from_millis(900),
        "silent client dropped at {timeout_at:?}"
    );
    silent.join().unwrap();
    assert_eq!(listener.pending(), 0);
    assert_eq!(common::fd_count(), fds_before);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pending_handshakes_are_bounded() {
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("bounded");
    let config = common::config(shmring::SignalKind::EventFd, 64);
    let mut listener = common::bind(&path);
    listener.set_max_pending(2);
    listener.set_handshake_timeout(Duration::from_secs(5));
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let clients: Vec<_> = (0..5)
        .map(|_| handshake::connect(&path, Duration::from_secs(5)).unwrap())
        .collect();
    let mut events = Events::with_capacity(16);
    let mut too_many = 0;
    let t0 = Instant::now();
    while too_many < 3 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for r in listener
            .accept_consumers::<u64>(poll.registry(), &config)
            .unwrap()
        {
            match r {
                Err(Error::TooManyPending { max: 2, .. }) => too_many += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(listener.pending(), 2);
    drop(clients);
    let _ = std::fs::remove_dir_all(dir);
}
