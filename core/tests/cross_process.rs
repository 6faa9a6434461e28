//! Channels between two real processes over a real Unix socket path: the test
//! binary re-executes itself as the peer (see `common::spawn_child`).

mod common;

use std::time::{Duration, Instant};

use shmring::{handshake, Config, Error, SignalKind};

const ITEMS: u64 = 10_000_000;
const CHUNK: usize = 512;
const T: Option<Duration> = Some(Duration::from_secs(30));

fn config(signal: SignalKind) -> Config {
    Config::new(4096).type_name("u64-seq").signal(signal)
}

fn signal_from_env() -> SignalKind {
    match std::env::var("SIGNAL").as_deref() {
        Ok("pipe") => SignalKind::Pipe,
        _ => SignalKind::EventFd,
    }
}

/// Pushes 0..n through the chunk API.
fn produce(tx: &mut shmring::Producer<u64>, n: u64) -> shmring::Result<()> {
    let mut next = 0u64;
    while next < n {
        let mut c = tx.write_chunk(CHUNK.min((n - next) as usize))?;
        if c.is_empty() {
            tx.wait_writable(T)?;
            continue;
        }
        next += c.fill_from_iter(next..) as u64;
        c.commit_all();
    }
    Ok(())
}

/// Pops n items, checking they are 0..n in order; returns their sum.
fn consume(rx: &mut shmring::Consumer<u64>, n: u64) -> shmring::Result<u64> {
    let mut expect = 0u64;
    let mut sum = 0u64;
    while expect < n {
        let c = rx.read_chunk(CHUNK)?;
        if c.is_empty() {
            rx.wait_readable(T)?;
            continue;
        }
        for v in c.iter() {
            assert_eq!(v, expect, "item out of order, lost or duplicated");
            sum = sum.wrapping_add(v);
            expect += 1;
        }
        c.release_all();
    }
    Ok(sum)
}

/// Entry point of the re-executed child; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let path = std::env::var("SOCK").expect("SOCK");
    let cfg = config(signal_from_env());
    match role.as_str() {
        "consumer" => {
            let mut rx = handshake::connect_consumer::<u64>(&path, &cfg).expect("connect");
            let sum = consume(&mut rx, ITEMS).expect("consume");
            // The producer exits after its last item: we then see Disconnected.
            let r = rx.pop_blocking(Some(Duration::from_secs(10)));
            println!("count={ITEMS} sum={sum} after={:?}", r.err());
        }
        "producer" => {
            let mut tx = handshake::connect_producer::<u64>(&path, &cfg).expect("connect");
            produce(&mut tx, ITEMS).expect("produce");
            println!("count={ITEMS}");
        }
        "short-producer" => {
            let mut tx = handshake::connect_producer::<u64>(&path, &cfg).expect("connect");
            produce(&mut tx, 1000).expect("produce");
            // Exit without any goodbye: the process just ends.
        }
        "stuck-consumer" => {
            let _rx = handshake::connect_consumer::<u64>(&path, &cfg).expect("connect");
            println!("connected");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

fn expected_sum(n: u64) -> u64 {
    n * (n - 1) / 2
}

fn parent_produces(signal: SignalKind, sig: &str) {
    let path = common::sock_path(sig);
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let child = common::spawn_child(
        "child_entry",
        "consumer",
        &[
            ("SOCK", path.display().to_string()),
            ("SIGNAL", sig.to_string()),
        ],
    );
    let mut tx = listener
        .accept_producer::<u64>(&config(signal))
        .expect("accept");
    produce(&mut tx, ITEMS).expect("produce");
    drop(tx);
    let out = common::finish(child);
    assert_eq!(common::field(&out, "count"), Some(ITEMS), "{out}");
    assert_eq!(
        common::field(&out, "sum"),
        Some(expected_sum(ITEMS)),
        "{out}"
    );
    assert!(out.contains("after=Some(Disconnected)"), "{out}");
}

fn parent_consumes(signal: SignalKind, sig: &str) {
    let path = common::sock_path(sig);
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let child = common::spawn_child(
        "child_entry",
        "producer",
        &[
            ("SOCK", path.display().to_string()),
            ("SIGNAL", sig.to_string()),
        ],
    );
    let mut rx = listener
        .accept_consumer::<u64>(&config(signal))
        .expect("accept");
    let sum = consume(&mut rx, ITEMS).expect("consume");
    assert_eq!(sum, expected_sum(ITEMS));
    let out = common::finish(child);
    assert_eq!(common::field(&out, "count"), Some(ITEMS));
    assert!(matches!(
        rx.pop_blocking(Some(Duration::from_secs(5))),
        Err(Error::Disconnected)
    ));
}

#[test]
fn ten_million_items_eventfd_parent_produces() {
    parent_produces(SignalKind::EventFd, "eventfd");
}

#[test]
fn ten_million_items_eventfd_parent_consumes() {
    parent_consumes(SignalKind::EventFd, "eventfd");
}

#[test]
fn ten_million_items_pipe_parent_produces() {
    parent_produces(SignalKind::Pipe, "pipe");
}

#[test]
fn ten_million_items_pipe_parent_consumes() {
    parent_consumes(SignalKind::Pipe, "pipe");
}

#[test]
fn producer_exit_mid_stream_is_disconnected_within_a_second() {
    let path = common::sock_path("exit");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let child = common::spawn_child(
        "child_entry",
        "short-producer",
        &[("SOCK", path.display().to_string())],
    );
    let mut rx = listener
        .accept_consumer::<u64>(&config(SignalKind::EventFd))
        .expect("accept");
    // Items committed before the exit are all delivered...
    for i in 0..1000u64 {
        assert_eq!(rx.pop_blocking(T).expect("item"), i);
    }
    // ...then the blocking wait ends with Disconnected, promptly.
    let t = Instant::now();
    let r = rx.pop_blocking(Some(Duration::from_secs(10)));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    common::finish(child);
}

#[test]
fn consumer_killed_while_producer_blocks_is_disconnected_within_a_second() {
    let path = common::sock_path("kill");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let mut child = common::spawn_child(
        "child_entry",
        "stuck-consumer",
        &[("SOCK", path.display().to_string())],
    );
    let mut tx = listener
        .accept_producer::<u64>(&config(SignalKind::EventFd))
        .expect("accept");
    // Fill the ring: the consumer never reads.
    let mut n = 0u64;
    while tx.try_push(n).is_ok() {
        n += 1;
    }
    assert_eq!(n, 4096);
    let pid = child.id() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        Instant::now()
    });
    let r = tx.push_blocking(n, Some(Duration::from_secs(10)));
    let seen = Instant::now();
    let killed = killer.join().expect("killer");
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(seen.duration_since(killed) < Duration::from_secs(1));
    let _ = child.wait();
}

/// A listener waiting for connections sleeps, down to the last
/// microsecond of its timeout: short timeouts in a loop (as an element's
/// accept thread runs them) must not busy-wait. With a poll rounded down to
/// whole milliseconds the last millisecond of each 2 ms wait spun: about
/// half the wall time on CPU.
#[test]
fn accept_timeouts_sleep() {
    let path = common::sock_path("accept-sleeps");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let (wall0, cpu0) = (Instant::now(), common::thread_cpu());
    for _ in 0..50 {
        let r = listener.accept(Some(Duration::from_micros(2_000)));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    }
    let (wall, cpu) = (wall0.elapsed(), common::thread_cpu() - cpu0);
    assert!(wall >= Duration::from_millis(100), "{wall:?}");
    assert!(
        cpu < wall / 5,
        "waiting for connections took {cpu:?} of CPU in {wall:?}"
    );
}
