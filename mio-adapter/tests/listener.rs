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

/// Handshake timeout of the silent-client test: long enough for the other
/// clients to be served meanwhile on a loaded machine.
const SILENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The event loop of `silent_client_does_not_block_the_loop`: the listener and
/// the one consumer it accepts, and what happened so far.
struct Loop {
    poll: Poll,
    events: Events,
    listener: shmring_mio::MioListener,
    config: shmring::Config,
    rx: Option<shmring_mio::MioConsumer<u64>>,
    timeouts: u32,
    refused: u32,
    got: u64,
    closed: bool,
    timeout_seen: Option<Instant>,
}

impl Loop {
    /// One turn: poll, accept or time out pending handshakes, drain the consumer.
    fn turn(&mut self) {
        let mut timeout = Duration::from_millis(50);
        if let Some(d) = self.listener.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(Instant::now()));
        }
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        let listener_due = self.events.iter().any(|e| e.token() == LISTENER)
            || self
                .listener
                .next_deadline()
                .is_some_and(|d| d <= Instant::now());
        if listener_due {
            for r in self
                .listener
                .accept_consumers::<u64>(self.poll.registry(), &self.config)
                .unwrap()
            {
                match r {
                    Ok(acc) => {
                        let mut c = acc.endpoint;
                        self.poll
                            .registry()
                            .register(&mut c, Token(1), Interest::READABLE)
                            .unwrap();
                        self.rx = Some(c);
                    }
                    Err(Error::HandshakeTimeout { .. }) => {
                        self.timeouts += 1;
                        self.timeout_seen = Some(Instant::now());
                    }
                    Err(Error::Shmring(shmring::Error::TypeMismatch { ours, theirs, .. })) => {
                        assert_eq!((ours.size, theirs.size), (8, 4));
                        self.refused += 1;
                    }
                    Err(e) => panic!("unexpected accept error {e}"),
                }
            }
        }
        if let Some(c) = self.rx.as_mut() {
            let got = &mut self.got;
            let st = c
                .drain_with(self.poll.registry(), |items| {
                    for &x in items {
                        assert_eq!(x, *got);
                        *got += 1;
                    }
                })
                .unwrap();
            if st == Readiness::Closed {
                self.closed = true;
                self.poll.registry().deregister(c).unwrap();
                self.rx = None;
            }
        }
    }

    /// Turns until `cond` holds; fails the test after 30 s.
    fn until(&mut self, what: &str, cond: impl Fn(&Loop) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(self) {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            self.turn();
        }
    }
}

/// A client that connects and says nothing holds a pending handshake; while
/// it does, a client of the wrong type is refused and a real producer is
/// accepted and drained to its end by the same loop. Ordered by states, not
/// sleeps: each client starts once the loop saw the one before. The silent
/// client is dropped with `HandshakeTimeout`, not before its timeout, and
/// nothing leaks.
#[test]
fn silent_client_does_not_block_the_loop() {
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("silent");
    let config = common::config(shmring::SignalKind::EventFd, 64);
    let mut listener = common::bind(&path);
    listener.set_handshake_timeout(SILENT_TIMEOUT);
    let poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let fds_before = common::fd_count();
    let mut l = Loop {
        poll,
        events: Events::with_capacity(16),
        listener,
        config: config.clone(),
        rx: None,
        timeouts: 0,
        refused: 0,
        got: 0,
        closed: false,
        timeout_seen: None,
    };

    // A client that connects and says nothing, until told to leave.
    let (leave, told) = std::sync::mpsc::channel::<()>();
    let p = path.clone();
    let before_silent = Instant::now();
    let silent = std::thread::spawn(move || {
        let fd = handshake::connect_socket(&p, Duration::from_secs(5)).unwrap();
        told.recv().unwrap();
        drop(fd);
    });
    l.until("the silent client's pending handshake", |l| {
        l.listener.pending() == 1
    });

    // A client of the wrong type, refused meanwhile.
    let p = path.clone();
    let c2 = config.clone();
    let wrong =
        std::thread::spawn(move || handshake::connect_producer::<u32>(&p, &c2).unwrap_err());
    l.until("the wrong client's refusal", |l| l.refused == 1);

    // A real producer, served and drained to its end meanwhile.
    let p = path.clone();
    let c3 = config.clone();
    let good = std::thread::spawn(move || {
        let mut tx = handshake::connect_producer::<u64>(&p, &c3).unwrap();
        for i in 0..1000u64 {
            tx.push_blocking(i, Some(Duration::from_secs(5))).unwrap();
        }
    });
    l.until("the producer's end", |l| l.closed);
    assert_eq!(l.got, 1000);
    assert_eq!(
        (l.timeouts, l.listener.pending()),
        (0, 1),
        "the silent client's handshake was no longer pending while the others were served"
    );
    good.join().unwrap();
    let e = wrong.join().unwrap();
    assert!(
        matches!(e, shmring::Error::TypeMismatch { ref ours, ref theirs, .. } if (ours.size, theirs.size) == (4, 8)),
        "{e}"
    );

    // The silent client is dropped by its handshake timeout, not before.
    l.until("the silent client's timeout", |l| l.timeouts == 1);
    let after = l.timeout_seen.unwrap() - before_silent;
    assert!(
        after >= SILENT_TIMEOUT,
        "silent client dropped after {after:?}"
    );
    leave.send(()).unwrap();
    silent.join().unwrap();
    assert_eq!(l.listener.pending(), 0);
    // Every fd opened for the three clients is closed again.
    assert_eq!(common::fd_count(), fds_before);
    drop(l);
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
        .map(|_| handshake::connect_socket(&path, Duration::from_secs(5)).unwrap())
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
