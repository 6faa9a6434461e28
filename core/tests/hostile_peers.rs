//! Hostile peers in their own processes, written against the wire protocol
//! (raw sockets, raw hello bytes, raw writes to the shared ring header and
//! to the signal fds): none of them can block the honest side, lock out an
//! honest peer, or stay counted after it is gone.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmring::handshake::{self, Arrival, Hello, Intake, IntakeOptions, Listener};
use shmring::{Config, Error};

const ENTRY: &str = "child_entry";

fn cfg() -> Config {
    Config::new(64)
        .type_name("u64-hostile")
        .handshake_timeout(Duration::from_secs(5))
}

/// Waits for `cond` (polling), failing after `limit` (a hang guard, not a
/// speed requirement).
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child process, SIGKILLed and reaped when dropped (also when a test
/// fails half-way).
struct Kid(std::process::Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Kid {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Kid {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The next line of a child's output that starts with one of `prefixes`
/// (skipping the test harness's own lines).
fn line_of(out: &mut impl BufRead, prefixes: &[&str]) -> String {
    loop {
        let mut l = String::new();
        let n = out.read_line(&mut l).expect("child output");
        assert!(n > 0, "child ended before printing {prefixes:?}");
        // The harness prints "test child_entry ... " before the child's
        // first line, on the same line.
        if let Some(at) = prefixes.iter().filter_map(|p| l.find(p)).min() {
            return l[at..].trim().to_string();
        }
    }
}

/// A socket connected to `path` (one attempt), before any handshake.
fn raw_connect(path: &Path) -> OwnedFd {
    handshake::connect_socket(path, Duration::ZERO).expect("connect")
}

/// A hello for a consumer of `u64` named as in [`cfg`], built field by field.
fn raw_hello() -> Vec<u8> {
    let name = cfg().type_name_for::<u64>().into_owned();
    let mut h = Hello {
        magic: u64::from_le_bytes(*b"SHMRHELO"),
        version: handshake::PROTOCOL_VERSION,
        role: 2,
        elem_size: 8,
        elem_align: 8,
        signal: 3,
        name_len: name.len() as u32,
        name: [0; handshake::NAME_MAX],
    };
    h.name[..name.len()].copy_from_slice(name.as_bytes());
    bytemuck::bytes_of(&h).to_vec()
}

fn raw_send(fd: &OwnedFd, bytes: &[u8]) -> isize {
    // SAFETY: sends from a live buffer; never blocks, never raises SIGPIPE.
    unsafe {
        libc::send(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    }
}

/// A server thread: an [`Intake`] serving every consumer that says hello
/// with a channel, pushing `1` into each; returns how many it served once
/// `stop` says so.
fn serve_all(
    listener: Listener,
    opts: IntakeOptions,
    stop: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<(u64, handshake::IntakeStats)> {
    std::thread::spawn(move || {
        let mut intake = Intake::new(listener, opts);
        let mut served = 0;
        let mut keep = Vec::new();
        while stop.try_recv().is_err() {
            for a in intake.poll(Duration::from_millis(20)).expect("poll") {
                if let Arrival::Ready(c) = a {
                    if let Ok(mut tx) = c.serve_producer::<u64>(&cfg()) {
                        served += 1;
                        let _ = tx.try_push(1);
                        keep.push(tx);
                    }
                }
            }
        }
        (served, intake.stats())
    })
}

/// 200 connections that never say hello (and 20 that say it only after 30 s)
/// stay open while an honest consumer connects: it is served (its own
/// handshake gives up after 5 s, and the listener gives a silent connection
/// 10 s: served one after the other, the honest one would wait 2200 s).
#[test]
fn slowloris_200_silent_connections_do_not_delay_an_honest_consumer() {
    let path = common::sock_path("slowloris");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let (stop_tx, stop_rx) = mpsc::channel();
    let server = serve_all(
        listener,
        IntakeOptions {
            max_pending: 256,
            hello_timeout: Duration::from_secs(10),
        },
        stop_rx,
    );
    let mut attacker =
        common::spawn_child(ENTRY, "slowloris", &[("SOCK", path.display().to_string())]);
    let mut out = BufReader::new(attacker.stdout.take().expect("stdout"));
    assert_eq!(line_of(&mut out, &["open="]), "open=220");
    let mut rx = handshake::connect_consumer::<u64>(&path, &cfg()).expect("honest consumer");
    assert_eq!(
        rx.pop_blocking(Some(Duration::from_secs(5))).expect("item"),
        1
    );
    let _ = attacker.kill();
    let _ = attacker.wait();
    stop_tx.send(()).expect("stop");
    let (served, stats) = server.join().expect("server");
    assert_eq!(served, 1);
    assert!(stats.accepted >= 221, "{stats:?}");
}

fn slowloris_child() {
    let path = std::env::var("SOCK").expect("SOCK");
    let path = Path::new(&path);
    let silent: Vec<OwnedFd> = (0..200).map(|_| raw_connect(path)).collect();
    let slow: Vec<OwnedFd> = (0..20).map(|_| raw_connect(path)).collect();
    println!("open={}", silent.len() + slow.len());
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(Duration::from_secs(30));
    for s in &slow {
        raw_send(s, &raw_hello());
    }
    std::thread::sleep(Duration::from_secs(600));
    drop(silent);
}

/// With the default bound, a flood of silent connections pushes the oldest
/// out (each counted) and an honest consumer that connects in the middle of
/// it is still served.
#[test]
fn pending_handshakes_are_bounded_and_the_oldest_dropped() {
    let path = common::sock_path("bound");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let (stop_tx, stop_rx) = mpsc::channel();
    let server = serve_all(listener, IntakeOptions::default(), stop_rx);
    let silent: Vec<OwnedFd> = (0..200).map(|_| raw_connect(&path)).collect();
    let mut rx = handshake::connect_consumer::<u64>(&path, &cfg()).expect("honest consumer");
    assert_eq!(
        rx.pop_blocking(Some(Duration::from_secs(5))).expect("item"),
        1
    );
    // The dropped ones see the end of their connection (after a refusal).
    let dropped = || {
        silent
            .iter()
            .filter(|fd| {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLRDHUP,
                    revents: 0,
                };
                // SAFETY: one live pollfd, no timeout.
                unsafe { libc::poll(&mut pfd, 1, 0) };
                pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0
            })
            .count()
    };
    wait_until(
        "the oldest pending to be dropped",
        Duration::from_secs(10),
        || dropped() >= 200 - handshake::DEFAULT_MAX_PENDING,
    );
    stop_tx.send(()).expect("stop");
    let (served, stats) = server.join().expect("server");
    assert_eq!(served, 1);
    assert!(
        stats.evicted >= (200 - handshake::DEFAULT_MAX_PENDING) as u64,
        "{stats:?}"
    );
}

/// Two processes bind one path at the same instant, 100 times: exactly one
/// starts each time, the other fails with `InUse`. The winner is SIGKILLed
/// every other round, leaving a stale socket (and lock file) that the next
/// round reclaims.
#[test]
fn two_listeners_racing_on_one_path_exactly_one_binds() {
    let path = common::sock_path("race");
    for round in 0..100 {
        let mut kids: Vec<_> = (0..2)
            .map(|_| {
                let mut c = std::process::Command::new(std::env::current_exe().expect("exe"));
                c.args([ENTRY, "--exact", "--nocapture", "--test-threads=1"])
                    .env(common::ROLE_VAR, "bind")
                    .env("SOCK", &path)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                Kid(c.spawn().expect("spawn"))
            })
            .collect();
        let mut outs: Vec<_> = kids
            .iter_mut()
            .map(|k| BufReader::new(k.stdout.take().expect("stdout")))
            .collect();
        for o in &mut outs {
            line_of(o, &["ready"]);
        }
        // Both are parked on stdin: release them together.
        for k in &mut kids {
            k.stdin
                .as_mut()
                .expect("stdin")
                .write_all(b"g")
                .expect("go");
        }
        let results: Vec<String> = outs
            .iter_mut()
            .map(|o| line_of(o, &["bound", "in-use", "error"]))
            .collect();
        let winners = results.iter().filter(|r| *r == "bound").count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        assert!(
            results.iter().any(|r| r.starts_with("in-use")),
            "round {round}: {results:?}"
        );
        // The winner serves the path.
        drop(raw_connect(&path));
        for (k, r) in kids.iter_mut().zip(&results) {
            if r == "bound" && round % 2 == 0 {
                let _ = k.kill();
            }
            drop(k.stdin.take());
            let _ = k.wait();
        }
    }
}

fn bind_child() {
    let path = std::env::var("SOCK").expect("SOCK");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let mut b = [0u8; 1];
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut b);
    match Listener::bind(&path, &Default::default()) {
        Ok(l) => {
            println!("bound");
            std::io::stdout().flush().expect("flush");
            let _ = std::io::Read::read(&mut std::io::stdin(), &mut b);
            drop(l);
        }
        Err(Error::InUse(m)) => println!("in-use {m}"),
        Err(e) => println!("error {e}"),
    }
}

/// A socket path longer than a Unix socket address holds is refused at bind
/// and connect, with the limit in the message.
#[test]
fn socket_path_too_long_fails_with_the_limit() {
    let long = std::env::temp_dir().join("x".repeat(120));
    let e = Listener::bind(&long, &Default::default()).expect_err("bound");
    assert!(
        matches!(e, Error::InvalidArgument(ref m) if m.contains("107")),
        "{e}"
    );
    let e = handshake::connect_socket(&long, Duration::from_millis(10)).expect_err("connected");
    assert!(
        matches!(e, Error::InvalidArgument(ref m) if m.contains("107")),
        "{e}"
    );
}

/// A consumer that reads a few items, leaves the rest (and its wake-ups)
/// unread, and is SIGKILLed: the producer sees it gone.
#[test]
fn consumer_killed_with_bytes_unread_is_seen_gone() {
    let path = common::sock_path("zombie");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let mut kid = Kid(common::spawn_child(
        ENTRY,
        "zombie",
        &[("SOCK", path.display().to_string())],
    ));
    let mut tx = listener
        .accept(Some(Duration::from_secs(10)))
        .expect("accept")
        .serve_producer::<u64>(&cfg())
        .expect("serve");
    for i in 0..64 {
        tx.push_blocking(i, Some(Duration::from_secs(10)))
            .expect("push");
    }
    let mut out = BufReader::new(kid.stdout.take().expect("stdout"));
    assert_eq!(line_of(&mut out, &["read="]), "read=3");
    assert!(tx.is_peer_alive());
    let _ = kid.kill();
    let _ = kid.wait();
    wait_until(
        "the dead consumer to be seen gone",
        Duration::from_secs(10),
        || !tx.is_peer_alive(),
    );
    assert!(matches!(tx.check_peer(), Err(Error::PeerDied)));
}

fn zombie_child() {
    let path = std::env::var("SOCK").expect("SOCK");
    let mut rx = handshake::connect_consumer::<u64>(&path, &cfg()).expect("connect");
    for _ in 0..3 {
        rx.pop_blocking(Some(Duration::from_secs(10))).expect("pop");
    }
    println!("read=3");
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(Duration::from_secs(600));
}

/// A consumer that sends a byte on its link after the handshake is dropped
/// as a protocol violation, although it is alive.
#[test]
fn a_byte_on_the_link_is_a_protocol_violation() {
    let path = common::sock_path("byte");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let mut kid = Kid(common::spawn_child(
        ENTRY,
        "byte",
        &[("SOCK", path.display().to_string())],
    ));
    let mut tx = listener
        .accept(Some(Duration::from_secs(10)))
        .expect("accept")
        .serve_producer::<u64>(&cfg())
        .expect("serve");
    let mut out = BufReader::new(kid.stdout.take().expect("stdout"));
    assert_eq!(line_of(&mut out, &["sent="]), "sent=1");
    let e = tx
        .check_peer()
        .expect_err("a byte on the link was accepted");
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    assert!(!tx.is_peer_alive());
    let _ = kid.kill();
    let _ = kid.wait();
}

fn byte_child() {
    let path = std::env::var("SOCK").expect("SOCK");
    let rx = handshake::connect_consumer::<u64>(&path, &cfg()).expect("connect");
    let link = rx.link_fd().try_clone_to_owned().expect("dup");
    assert_eq!(raw_send(&link, b"x"), 1);
    println!("sent=1");
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(Duration::from_secs(600));
}

/// The abuse of the signal fds a peer holds: clear `O_NONBLOCK`, fill
/// everything it can send into (with eventfd-style counter values too), stop
/// reading, shut its ends down, and keep announcing sleeps in the shared ring
/// header so that every commit or release sends a wake-up.
fn abuse_signal_fds(fds: &[OwnedFd]) {
    let max = 0xffff_ffff_ffff_fffe_u64.to_ne_bytes();
    for fd in fds {
        // Fill what we can (sockets: `send`; an eventfd or a pipe: `write`,
        // non-blocking for us), then clear O_NONBLOCK behind the peer's back.
        // SAFETY: fcntl and writes from a live buffer on fds we own.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
            for _ in 0..100_000 {
                if raw_send(fd, &max) <= 0
                    && libc::write(fd.as_raw_fd(), max.as_ptr().cast(), 8) <= 0
                {
                    break;
                }
            }
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

/// Maps a ring segment read-write, as a hostile peer does.
fn map_ring(fd: &OwnedFd) -> *mut u8 {
    shmring::segment::map_writable_forever(fd.as_fd())
        .expect("map the segment")
        .0
}

/// A hostile consumer (raw hello, raw fds) abuses every signal fd it was
/// given and keeps announcing sleeps: the producer pushes 20 000 items into
/// a ring nobody reads, each commit sending a wake-up, and never blocks. It
/// then sees the consumer's hang-up when the consumer closes its link.
#[test]
fn hostile_consumer_cannot_block_the_producer_through_its_signals() {
    let path = common::sock_path("abuse-c");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let mut kid = common::spawn_child(
        ENTRY,
        "abuse-consumer",
        &[("SOCK", path.display().to_string())],
    );
    let tx = listener
        .accept(Some(Duration::from_secs(10)))
        .expect("accept")
        .serve_producer::<u64>(&cfg())
        .expect("serve");
    let mut out = BufReader::new(kid.stdout.take().expect("stdout"));
    line_of(&mut out, &["abusing"]);
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut tx = tx;
        let mut pushed = 0u64;
        for i in 0..20_000u64 {
            match tx.push_blocking(i, Some(Duration::from_millis(1))) {
                Ok(()) => pushed += 1,
                Err(Error::Timeout) | Err(Error::Full) => {}
                Err(e) => panic!("push: {e}"),
            }
        }
        let _ = done_tx.send(pushed);
        tx
    });
    // A hang guard: 20 000 pushes of at most 1 ms each.
    let pushed = done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the producer blocked");
    assert!(pushed >= 64, "{pushed}");
    let mut tx = worker.join().expect("worker");
    let _ = kid.kill();
    let _ = kid.wait();
    wait_until("the consumer's hang-up", Duration::from_secs(10), || {
        !tx.is_peer_alive()
    });
}

fn abuse_consumer_child() {
    let path = std::env::var("SOCK").expect("SOCK");
    let link = raw_connect(Path::new(&path));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (_, fds) =
        handshake::exchange_hello(link.as_fd(), &raw_hello(), deadline).expect("welcome");
    assert_eq!(fds.len(), 3, "segment, data end, space end");
    let ring = map_ring(&fds[0]);
    abuse_signal_fds(&fds[1..]);
    println!("abusing");
    std::io::stdout().flush().expect("flush");
    // The consumer's sleep word (offset 136): a new odd value over and over.
    // SAFETY: offset 136 of the mapped ring is an aligned u64 (the header
    // layout of `shmring::ring`).
    let word = unsafe { &*(ring.add(136) as *const std::sync::atomic::AtomicU64) };
    let mut seq = 1u64;
    loop {
        word.store(seq, std::sync::atomic::Ordering::SeqCst);
        seq += 2;
        std::thread::yield_now();
    }
}

/// Entry point of the re-executed children; does nothing in a normal run.
#[test]
fn child_entry() {
    match common::role().as_deref() {
        Some("slowloris") => slowloris_child(),
        Some("bind") => bind_child(),
        Some("zombie") => zombie_child(),
        Some("byte") => byte_child(),
        Some("abuse-consumer") => abuse_consumer_child(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
}
