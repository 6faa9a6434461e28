//! Issue 3: the frame-stream receiver ([`MioFrameReceiver`]) in a mio loop,
//! fed by a real second process (this test binary, re-executed) that serves
//! frames on a socket path: everything arrives in order and every slot comes
//! back; bursts with idle gaps never lose a wake-up; what a producer sent
//! before leaving is delivered before `Closed`; a hostile producer's bad
//! descriptors are errors, not panics.

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use shmring::frames::{
    self, Descriptor, FrameConfig, FrameMeta, FrameRef, FrameSender, Kind, Received, SegmentInfo,
    NONE,
};
use shmring::handshake::Listener;
use shmring::{SignalKind, Zeroable};
use shmring_mio::{Error, FloodPolicy, MioFrameReceiver, Readiness, WakeStats};

const T: Option<Duration> = Some(Duration::from_secs(10));
const TOKEN: Token = Token(7);

/// Geometry the sender children serve (the receiver takes whatever it gets).
const SLOTS: u32 = 8;
const SLOT_SIZE: usize = 4096;
/// A small descriptor ring: the sender fills it and has to wait for room.
const DESCRIPTORS: usize = 16;

fn config(signal: SignalKind) -> FrameConfig {
    FrameConfig::new(SLOTS, SLOT_SIZE)
        .descriptors(DESCRIPTORS)
        .signal(signal)
        .handshake_timeout(Duration::from_secs(10))
}

fn parse_signal(s: &str) -> SignalKind {
    match s {
        "pipe" => SignalKind::Pipe,
        _ => SignalKind::EventFd,
    }
}

/// Length of frame `i`: 1..=SLOT_SIZE, varied.
fn frame_len(i: u64) -> usize {
    1 + (i as usize * 7919 + 13) % SLOT_SIZE
}

/// Byte `k` of frame `i`.
fn pattern(i: u64, k: usize) -> u8 {
    (i as usize * 31 + k * 7) as u8
}

fn meta(i: u64) -> FrameMeta {
    FrameMeta {
        pts: i * 1000,
        dts: NONE,
        duration: 1000,
        offset: i,
        offset_end: i + 1,
        flags: (i % 7) as u32,
    }
}

fn check_frame(f: &FrameRef, i: u64) {
    assert_eq!(f.meta().pts, i * 1000, "frame {i} pts");
    assert_eq!(f.meta().offset, i, "frame {i} offset");
    assert_eq!(f.meta().flags, (i % 7) as u32, "frame {i} flags");
    let b = f.bytes();
    assert_eq!(b.len(), frame_len(i), "frame {i} length");
    assert!(
        b.iter().enumerate().all(|(k, &x)| x == pattern(i, k)),
        "frame {i} content"
    );
}

// ---------------------------------------------------------------------------
// The child side: a producer process serving one or more frame streams.

#[test]
fn child() {
    let Ok(role) = std::env::var(common::ENV_ROLE) else {
        return;
    };
    let args: Vec<String> = std::env::var(common::ENV_ARGS)
        .unwrap_or_default()
        .split('\u{1f}')
        .map(String::from)
        .collect();
    let r = match role.as_str() {
        "sender" => child_sender(&args),
        "leaver" => child_leaver(&args),
        "hostile" => child_hostile(&args),
        r => {
            eprintln!("unknown child role {r}");
            std::process::exit(2);
        }
    };
    let code = match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{role}: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Binds `path` and serves the first consumer that connects.
fn serve_one(path: &str, cfg: &FrameConfig) -> shmring::Result<(Listener, FrameSender)> {
    let listener = Listener::bind(path, &Default::default())?;
    let conn = listener.accept(T)?;
    let tx = frames::serve(conn, cfg)?;
    Ok((listener, tx))
}

/// Sends frame `i`, waiting for a free slot and for room as needed.
fn send_frame(tx: &mut FrameSender, i: u64) -> shmring::Result<()> {
    let len = frame_len(i);
    loop {
        tx.reclaim(|_| {})?;
        let Some(mut lease) = tx.try_lease() else {
            tx.wait_returns(T)?;
            continue;
        };
        for (k, b) in lease.as_mut()[..len].iter_mut().enumerate() {
            *b = pattern(i, k);
        }
        // On `Full` the lease comes back and is dropped here: wait, retry.
        match tx.send_lease(lease, len, &meta(i)) {
            Err(e) if matches!(e.error, shmring::Error::Full) => tx.wait_writable(T)?,
            r => return r.map_err(shmring::Error::from),
        }
    }
}

/// Retries `op` while it reports `Full` (descriptor ring full, or the string
/// slot still held by the consumer), for up to 10 s.
fn send_retry(
    tx: &mut FrameSender,
    mut op: impl FnMut(&mut FrameSender) -> shmring::Result<()>,
) -> shmring::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match op(tx) {
            Err(shmring::Error::Full) if Instant::now() < deadline => {
                tx.reclaim(|_| {})?;
                match tx.wait_returns(Some(Duration::from_millis(1))) {
                    Ok(()) | Err(shmring::Error::Timeout) => {}
                    Err(e) => return Err(e),
                }
            }
            r => return r,
        }
    }
}

/// Waits until the consumer gave every slot back; `false` after 10 s.
fn all_returned(tx: &mut FrameSender) -> shmring::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.reclaim(|_| {})?;
        if tx.in_flight() == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            eprintln!("sender: {} slots still in flight", tx.in_flight());
            return Ok(false);
        }
        match tx.wait_returns(Some(Duration::from_millis(100))) {
            Ok(()) | Err(shmring::Error::Timeout) => {}
            Err(shmring::Error::Disconnected | shmring::Error::PeerDied) => {
                tx.reclaim(|_| {})?;
                return Ok(tx.in_flight() == 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The bursts of a sender: (frames, sleep after it in µs). `rounds == 0`:
/// one burst of `max_burst` frames.
fn plan(seed: u64, rounds: usize, max_burst: u64) -> Vec<(u64, u64)> {
    if rounds == 0 {
        return vec![(max_burst, 0)];
    }
    common::burst_plan(seed, rounds, max_burst)
}

/// Args: path, signal, seed, rounds, max_burst. Serves one consumer:
/// stream-start, caps, segment, the frames of the plan, EOS; then waits until
/// every slot came back (exit code 3 if not) and hangs up.
fn child_sender(args: &[String]) -> shmring::Result<i32> {
    let cfg = config(parse_signal(&args[1]));
    let bursts = plan(
        args[2].parse().unwrap(),
        args[3].parse().unwrap(),
        args[4].parse().unwrap(),
    );
    let (_listener, mut tx) = serve_one(&args[0], &cfg)?;
    send_retry(&mut tx, |tx| tx.send_stream_start("stream-1"))?;
    send_retry(&mut tx, |tx| {
        tx.send_caps("video/x-raw,format=GRAY8,width=64,height=64")
    })?;
    send_retry(&mut tx, |tx| tx.send_segment(&SegmentInfo::time()))?;
    let mut next = 0u64;
    for (burst, sleep_us) in bursts {
        for _ in 0..burst {
            send_frame(&mut tx, next)?;
            next += 1;
        }
        if sleep_us > 0 {
            std::thread::sleep(Duration::from_micros(sleep_us));
        }
    }
    send_retry(&mut tx, |tx| tx.send_eos())?;
    Ok(if all_returned(&mut tx)? { 0 } else { 3 })
}

/// Args: path, signal, gaps. Sends caps and `gaps` gap events as fast as it
/// can (the descriptor ring holds them all), then exits at once.
fn child_leaver(args: &[String]) -> shmring::Result<i32> {
    let n: u64 = args[2].parse().unwrap();
    let cfg = config(parse_signal(&args[1])).descriptors(LEAVER_DESCRIPTORS);
    let (_listener, mut tx) = serve_one(&args[0], &cfg)?;
    tx.send_caps("audio/x-raw")?;
    for i in 0..n {
        tx.send_gap(i, 1)?;
    }
    Ok(0)
}

/// The bad descriptors of the hostile child, in order. Each goes to a
/// consumer of its own, after caps (sequence number 0) and one good frame
/// (sequence number 1), which the consumer keeps.
fn bad_descriptor(variant: usize) -> Option<(&'static str, Descriptor)> {
    let mut d = Descriptor::zeroed();
    d.seq = 2;
    let what = match variant {
        0 => {
            d.kind = 99;
            "unknown kind"
        }
        1 => {
            d.kind = Kind::Frame as u32;
            d.slot = 1000;
            d.size = 1;
            "slot out of range"
        }
        2 => {
            d.kind = Kind::Frame as u32;
            d.slot = 1;
            d.offset = 16;
            d.size = u32::MAX - 16;
            "bytes outside the slot"
        }
        3 => {
            d.kind = Kind::Eos as u32;
            d.seq = 7;
            "skipped sequence number"
        }
        4 => {
            // The slot of the good frame (the child fills it in), which the
            // consumer still holds.
            d.kind = Kind::Frame as u32;
            d.size = 1;
            "slot sent again while held"
        }
        5 => {
            d.kind = Kind::Segment as u32;
            "segment with rate 0"
        }
        6 => {
            d.kind = Kind::Caps as u32;
            d.slot = SLOTS - 1;
            d.size = (SLOT_SIZE + 1) as u32;
            "caps longer than the slot"
        }
        _ => return None,
    };
    Some((what, d))
}

/// Args: path, signal. For every variant of [`bad_descriptor`]: serves one
/// consumer caps, a good frame and the bad descriptor, then waits until that
/// consumer hangs up. The last variant exits right after sending instead.
fn child_hostile(args: &[String]) -> shmring::Result<i32> {
    let cfg = config(parse_signal(&args[1]));
    let listener = Listener::bind(&args[0], &Default::default())?;
    let mut variant = 0;
    while let Some((_, mut d)) = bad_descriptor(variant) {
        let mut tx = frames::serve(listener.accept(T)?, &cfg)?;
        tx.send_caps("x/hostile")?;
        let mut lease = tx
            .try_lease()
            .ok_or(shmring::Error::InvalidArgument("no slot".into()))?;
        lease.as_mut()[0] = 42;
        if variant == 4 {
            d.slot = lease.index();
        }
        tx.send_lease(lease, 1, &meta(0))?;
        tx.send_raw(d)?;
        if bad_descriptor(variant + 1).is_none() {
            // Gone before the consumer even looks.
            return Ok(0);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while tx.is_peer_alive() {
            if Instant::now() >= deadline {
                eprintln!("hostile: consumer {variant} never hung up");
                return Ok(3);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        variant += 1;
    }
    Ok(0)
}

const LEAVER_DESCRIPTORS: usize = 1024;

// ---------------------------------------------------------------------------
// The loop side.

#[derive(Debug, Default)]
struct Outcome {
    /// Messages delivered.
    messages: u64,
    /// `drain_with` calls.
    calls: u64,
    /// Calls that returned `Ready`.
    readies: u64,
    /// Ended with `Closed` (else with `error`).
    closed: bool,
    error: Option<Error>,
    wake: WakeStats,
}

/// One `Poll`, one receiver: calls `drain_with` only when the contract says so
/// (an event for its token, `Ready`, a due `Throttled`; never on a bare
/// timeout, so a lost wake-up shows as a stall) until `Closed` or an error.
/// Panics when nothing arrives for `stall`, or after `overall`.
fn drive(
    rx: &mut MioFrameReceiver,
    stall: Duration,
    overall: Duration,
    mut on: impl FnMut(Received),
) -> Outcome {
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(rx, TOKEN, Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);
    let start = Instant::now();
    let mut progress = start;
    // Drain once right away: it arms the wake-up.
    let mut state = Readiness::Ready;
    let mut out = Outcome::default();
    loop {
        let now = Instant::now();
        assert!(
            now - progress < stall,
            "stall: nothing for {:?} after {} messages ({:?}, {:?})",
            now - progress,
            out.messages,
            state,
            rx.wake_stats()
        );
        assert!(now - start < overall, "loop ran for {:?}", now - start);
        let timeout = match state {
            Readiness::Ready => Duration::ZERO,
            Readiness::Throttled(t) => t.saturating_duration_since(now),
            _ => Duration::from_millis(50),
        };
        poll.poll(&mut events, Some(timeout)).unwrap();
        let due = match state {
            Readiness::Ready => true,
            Readiness::Throttled(t) => Instant::now() >= t,
            _ => false,
        } || events.iter().any(|e| e.token() == TOKEN);
        if !due {
            continue;
        }
        out.calls += 1;
        let mut n = 0u64;
        let r = rx.drain_with(poll.registry(), |m| {
            n += 1;
            on(m)
        });
        out.messages += n;
        if n > 0 {
            progress = Instant::now();
        }
        match r {
            Ok(Readiness::Closed) => {
                out.closed = true;
                break;
            }
            Ok(s) => {
                out.readies += u64::from(s == Readiness::Ready);
                state = s;
            }
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    poll.registry().deregister(rx).unwrap();
    out.wake = rx.wake_stats();
    out
}

/// What a well-behaved sender child sends, as the loop checks it.
#[derive(Debug, Default)]
struct Stream {
    /// Position in stream-start, caps, segment, frames, EOS.
    stage: u32,
    frames: u64,
    eos: bool,
}

impl Stream {
    fn on(&mut self, m: Received) {
        assert!(!self.eos, "{m:?} after EOS");
        match m {
            Received::StreamStart(id) => {
                assert_eq!(self.stage, 0, "stream-start out of order");
                assert_eq!(id.id, "stream-1");
                self.stage = 1;
            }
            Received::Caps(c) => {
                assert_eq!(self.stage, 1, "caps out of order");
                assert_eq!(c, "video/x-raw,format=GRAY8,width=64,height=64");
                self.stage = 2;
            }
            Received::Segment(s) => {
                assert_eq!(self.stage, 2, "segment out of order");
                assert_eq!(s.rate, 1.0);
                assert_eq!(s.stop, NONE);
                self.stage = 3;
            }
            Received::Frame(f) => {
                assert_eq!(self.stage, 3, "frame before caps and segment");
                check_frame(&f, self.frames);
                self.frames += 1;
            } // the slot goes back here
            Received::Eos => self.eos = true,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A fresh socket path in a temp dir (named after `socket`) and the child
/// `role` serving a frame stream there, with `args` after the path.
fn spawn_server(socket: &str, role: &str, args: &[String]) -> (PathBuf, PathBuf, Child) {
    let (dir, path) = common::temp_socket(socket);
    let child = common::spawn_at(role, &path, args);
    (dir, path, child)
}

fn connect(path: &std::path::Path, signal: SignalKind) -> MioFrameReceiver {
    let cfg = FrameConfig::consumer()
        .signal(signal)
        .handshake_timeout(Duration::from_secs(10));
    MioFrameReceiver::new(frames::connect(path, &cfg).expect("connect"))
}

/// Test 1: caps, events and frames from another process arrive in order and
/// intact, every slot goes back, and the producer's exit ends in `Closed`.
#[test]
fn frames_from_another_process() {
    let _serial = common::serial();
    const N: u64 = 500;
    let (dir, path, child) = spawn_server(
        "frames",
        "sender",
        &["eventfd".into(), "0".into(), "0".into(), N.to_string()],
    );
    let mut rx = connect(&path, SignalKind::EventFd);
    let mut stream = Stream::default();
    let out = drive(
        &mut rx,
        Duration::from_secs(5),
        Duration::from_secs(30),
        |m| stream.on(m),
    );
    assert!(out.closed, "{out:?}");
    assert_eq!(stream.frames, N);
    assert!(stream.eos, "no EOS");
    assert_eq!(out.messages, N + 4);
    assert_eq!(rx.frames_held(), 0);
    assert_eq!(out.wake.throttles, 0, "{out:?}");
    // Exit code 3: some slot never came back to the sender.
    common::wait_ok(child, "frame sender");
    // Closed stays closed.
    let poll = Poll::new().unwrap();
    assert_eq!(
        rx.drain_with(poll.registry(), |m| panic!("{m:?}")).unwrap(),
        Readiness::Closed
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Test 2: bursts of frames with idle gaps (each gap lets the receiver sleep,
/// each burst must wake it) for many rounds, with a small budget: no wake-up
/// is lost (the loop only drains on events, and fails after 2 s without one).
fn bursts(signal: SignalKind, rounds: usize, max_burst: u64, budget: usize) {
    let _serial = common::serial();
    let seed = 0xf4a3e5 + rounds as u64;
    let total: u64 = plan(seed, rounds, max_burst).iter().map(|b| b.0).sum();
    let (dir, path, child) = spawn_server(
        "frame-bursts",
        "sender",
        &[
            common::signal_name(signal).into(),
            seed.to_string(),
            rounds.to_string(),
            max_burst.to_string(),
        ],
    );
    let mut rx = connect(&path, signal);
    rx.set_budget(budget);
    let mut stream = Stream::default();
    let out = drive(
        &mut rx,
        // A gap is at most 2 ms: 2 s without a message is a lost wake-up.
        Duration::from_secs(2),
        Duration::from_secs(60),
        |m| stream.on(m),
    );
    eprintln!("{signal:?}: {out:?}");
    assert!(out.closed, "{out:?}");
    assert_eq!(stream.frames, total);
    assert!(stream.eos);
    assert_eq!(out.wake.throttles, 0, "honest producer throttled: {out:?}");
    assert!(out.wake.wakeups > 0, "{out:?}");
    common::wait_ok(child, "bursty frame sender");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bursts_and_gaps_eventfd() {
    bursts(SignalKind::EventFd, 300, 40, 5);
}

#[test]
fn bursts_and_gaps_pipe() {
    bursts(SignalKind::Pipe, 200, 40, 5);
}

#[test]
fn single_frame_bursts() {
    // One frame per burst: the sleep/wake race on every frame.
    bursts(SignalKind::EventFd, 400, 1, 64);
}

/// What a producer sent before it exited is all delivered, over several calls
/// when it exceeds the budget, before `Closed`.
#[test]
fn leftovers_of_an_exited_producer_are_delivered() {
    let _serial = common::serial();
    const GAPS: u64 = 1000;
    let (dir, path, child) =
        spawn_server("frame-leaver", "leaver", &["pipe".into(), GAPS.to_string()]);
    let mut rx = connect(&path, SignalKind::Pipe);
    common::wait_ok(child, "leaving frame sender");
    rx.set_budget(64);
    let mut next = 0u64;
    let mut caps = false;
    let out = drive(
        &mut rx,
        Duration::from_secs(5),
        Duration::from_secs(10),
        |m| match m {
            Received::Caps(c) => {
                assert!(!caps && next == 0);
                assert_eq!(c, "audio/x-raw");
                caps = true;
            }
            Received::Gap { pts, duration } => {
                assert!(caps);
                assert_eq!((pts, duration), (next, 1));
                next += 1;
            }
            other => panic!("unexpected {other:?}"),
        },
    );
    assert!(out.closed, "{out:?}");
    assert!(caps);
    assert_eq!(next, GAPS);
    assert!(out.readies >= GAPS / 64, "{out:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Test 3: a hostile producer's bad descriptors make `drain_with` fail with
/// `BadDescriptor` (after what came before them), without a panic.
#[test]
fn hostile_producer_descriptors_are_errors() {
    let _serial = common::serial();
    let (dir, path, child) = spawn_server("frame-hostile", "hostile", &["eventfd".into()]);
    let mut variant = 0;
    while let Some((what, _)) = bad_descriptor(variant) {
        let mut rx = connect(&path, SignalKind::EventFd);
        let mut kept: Vec<FrameRef> = Vec::new();
        let mut caps = false;
        let out = drive(
            &mut rx,
            Duration::from_secs(5),
            Duration::from_secs(10),
            |m| match m {
                Received::Caps(c) => {
                    assert_eq!(c, "x/hostile");
                    caps = true;
                }
                // Keep the good frame: its slot stays held.
                Received::Frame(f) => {
                    assert_eq!(f.bytes(), &[42]);
                    kept.push(f);
                }
                other => panic!("{what}: delivered {other:?}"),
            },
        );
        assert!(!out.closed, "{what}: closed without an error: {out:?}");
        assert!(caps, "{what}: caps lost");
        assert_eq!(kept.len(), 1, "{what}: good frame lost");
        match &out.error {
            Some(Error::Shmring(shmring::Error::BadDescriptor(m))) => {
                eprintln!("{what}: {m}");
            }
            other => panic!("{what}: {other:?}"),
        }
        drop(kept);
        drop(rx);
        variant += 1;
    }
    common::wait_ok(child, "hostile frame sender");
    let _ = std::fs::remove_dir_all(dir);
}

/// Flood limits that trip after a few empty wake-ups and then pause for long.
fn strict_policy() -> FloodPolicy {
    FloodPolicy {
        max_empty_wakeups: 4,
        window: Duration::from_secs(10),
        pause: Duration::from_secs(10),
        max_pause: Duration::from_secs(10),
    }
}

/// Wakes `rx` through a copy of its wake-up eventfd (what a flooding peer
/// holds) until a call returns `Throttled`.
fn flood_until_throttled(rx: &mut MioFrameReceiver, poll: &Poll) {
    let peer_copy = rx.as_fd().try_clone_to_owned().unwrap();
    for _ in 0..10 {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live local to an fd we own.
        let w = unsafe { libc::write(peer_copy.as_raw_fd(), (&one as *const u64).cast(), 8) };
        assert_eq!(w, 8);
        match rx.drain_with(poll.registry(), |m| panic!("{m:?}")).unwrap() {
            Readiness::Throttled(_) => return,
            s => assert_eq!(s, Readiness::Armed),
        }
    }
    panic!("never throttled: {:?}", rx.wake_stats());
}

/// The producer floods the wake-up fd (so it gets paused), then sends more
/// than a budget's worth and leaves while the pause lasts: the hang-up still
/// ends the wait, and everything it sent comes out, one budget per call
/// (`Ready`), before `Closed`.
#[test]
fn leftovers_after_a_hang_up_while_throttled() {
    let (mut tx, rx) = frames::pair(
        &FrameConfig::new(4, 256)
            .descriptors(512)
            .signal(SignalKind::EventFd),
    )
    .unwrap();
    let mut rx = MioFrameReceiver::with_policy(rx, strict_policy());
    rx.set_budget(100);
    let (mut poll, mut events) = registered_and_armed(&mut rx);
    flood_until_throttled(&mut rx, &poll);
    assert_eq!(rx.wake_stats().throttles, 1);
    assert!(rx.throttled_until().is_some());
    for i in 0..300 {
        tx.send_gap(i, 1).unwrap();
    }
    drop(tx);
    // The wake-up fd is out of the Poll; the link's hang-up fires the token.
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .unwrap();
    assert!(events
        .iter()
        .any(|e| e.token() == TOKEN && e.is_read_closed()));
    let mut next = 0u64;
    let mut states = Vec::new();
    while states.last() != Some(&Readiness::Closed) && states.len() < 10 {
        let s = rx
            .drain_with(poll.registry(), |m| match m {
                Received::Gap { pts, .. } => {
                    assert_eq!(pts, next);
                    next += 1;
                }
                other => panic!("{other:?}"),
            })
            .unwrap();
        states.push(s);
    }
    use Readiness::{Closed, Ready};
    assert_eq!(states, [Ready, Ready, Ready, Closed]);
    assert_eq!(next, 300);
    poll.registry().deregister(&mut rx).unwrap();
}

/// A `Poll` with `rx` registered under [`TOKEN`] and drained once (nothing
/// there yet: `Armed`), and room for its events.
fn registered_and_armed(rx: &mut MioFrameReceiver) -> (Poll, Events) {
    let poll = Poll::new().unwrap();
    poll.registry()
        .register(rx, TOKEN, Interest::READABLE)
        .unwrap();
    assert_eq!(
        rx.drain_with(poll.registry(), |m| panic!("{m:?}")).unwrap(),
        Readiness::Armed
    );
    (poll, Events::with_capacity(8))
}

/// A producer that drops this consumer with a reason (a sink's slow-consumer
/// policy) ends the stream as `Closed`, after everything it sent, and the
/// reason stays readable; for every signal kind.
#[test]
fn a_goodbye_with_a_reason_is_closed_and_keeps_the_reason() {
    for signal in [SignalKind::Socket, SignalKind::Pipe, SignalKind::EventFd] {
        let (mut tx, rx) = frames::pair(&FrameConfig::new(4, 256).signal(signal)).unwrap();
        let mut rx = MioFrameReceiver::new(rx);
        let (mut poll, mut events) = registered_and_armed(&mut rx);
        tx.send_caps("audio/x-raw").unwrap();
        tx.say_goodbye("too slow");
        drop(tx);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            let state = rx
                .drain_with(poll.registry(), |m| got.push(format!("{m:?}")))
                .unwrap_or_else(|e| panic!("{signal:?}: {e}"));
            if state == Readiness::Closed {
                break;
            }
            assert!(Instant::now() < deadline, "{signal:?}: never closed");
        }
        assert_eq!(got.len(), 1, "{signal:?}: {got:?}");
        assert!(got[0].contains("audio/x-raw"), "{got:?}");
        assert_eq!(rx.goodbye(), Some("too slow"), "{signal:?}");
    }
}
