//! Channels between two real processes over a real Unix socket path: the test
//! binary re-executes itself as the peer (see `common::spawn_child`).

mod common;
#[path = "common/syscalls.rs"]
mod syscalls;

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

/// The consumer learns of a producer's exit from the socket, not from a
/// timer: once the producer process is gone (waited for here), even a wait
/// with a zero timeout, its items all taken, ends with `Disconnected`.
#[test]
fn producer_exit_mid_stream_is_disconnected_at_once() {
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
    // The producer exits after its last item, without any goodbye.
    common::finish(child);
    // Items committed before the exit are all delivered...
    for i in 0..1000u64 {
        assert_eq!(rx.pop_blocking(T).expect("item"), i);
    }
    // ...then the very next wait, with no time to wait at all, says so.
    let r = rx.pop_blocking(Some(Duration::ZERO));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}

/// The scheduler state of thread `tid` of this process (`R`, `S`, ...).
fn thread_state(tid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    after.chars().next().expect("state")
}

/// A producer asleep in `push_blocking` (the ring full, its consumer stuck)
/// when the consumer process is killed wakes up with `PeerDied`, not
/// `Timeout`. The kill comes once the producer thread is seen asleep, and
/// the child is checked to have died of that SIGKILL.
#[test]
fn consumer_killed_while_producer_blocks_is_reported_dead() {
    use std::os::unix::process::ExitStatusExt as _;
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
    // SAFETY: gettid takes no arguments.
    let me = unsafe { libc::gettid() };
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        // Asleep in the kernel: the producer's wait for room (it spins
        // first, running).
        while thread_state(me) != 'S' {
            assert!(Instant::now() < deadline, "the producer never slept");
            std::thread::yield_now();
        }
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    });
    let r = tx.push_blocking(n, Some(Duration::from_secs(60)));
    killer.join().expect("killer");
    assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
    let status = child.wait().expect("wait child");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

/// A listener waiting for connections sleeps, down to the last microsecond
/// of its timeout: short timeouts in a loop (as an element's accept thread
/// runs them) must not busy-wait. Counted, not timed: each 2 ms `accept`
/// sleeps in one `ppoll` (two if the kernel woke it a hair early), where a
/// poll rounded down to whole milliseconds would have spun through its last
/// millisecond in hundreds of zero-timeout polls.
#[test]
fn accept_timeouts_sleep() {
    let path = common::sock_path("accept-sleeps");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let ((), calls) = syscalls::count(|gate| {
        gate.measure(|| {
            for _ in 0..50 {
                let r = listener.accept(Some(Duration::from_micros(2_000)));
                assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
            }
        })
    });
    let polls = calls.count(libc::SYS_ppoll);
    #[cfg(target_arch = "x86_64")]
    let polls = polls + calls.count(libc::SYS_poll);
    eprintln!("50 accepts: {polls} polls, {} system calls", calls.total);
    assert!(
        (50..=100).contains(&polls),
        "{polls} polls for 50 accepts: {calls:?}"
    );
}
