//! Arena switches: a producer moves a connected consumer to a new arena
//! (bigger slots after a format change), frames before and after arrive
//! byte-exact and in order, what the consumer held across the switch stays
//! readable, returns after it free slots of the new arena; and a hostile
//! producer's switches (no fd, a writable or short memfd, a geometry too big
//! or garbage, a switch while the consumer holds old slots, floods of them)
//! are clean errors that leak nothing.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use shmring::frames::{
    self, Arena, Blob, Descriptor, FrameConfig, FrameExtras, FrameMeta, Kind, Received,
};
use shmring::handshake::{self, Listener};
use shmring::segment::Segment;
use shmring::{Error, Zeroable};

const T: Option<Duration> = Some(Duration::from_secs(10));

/// Frame `i`: `len` bytes of a pattern of its own.
fn pattern(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (i as usize * 131 + k * 7 + k / 251) as u8)
        .collect()
}

fn meta(i: u64) -> FrameMeta {
    FrameMeta {
        pts: i * 1000,
        offset: i,
        ..FrameMeta::default()
    }
}

/// Frame `i` in a slot of the sender's current arena.
fn send_slot(tx: &mut frames::FrameSender, i: u64, len: usize) {
    send_slot_noting(tx, i, len, &mut Vec::new());
}

/// [`send_slot`], noting the slots that came back meanwhile in `returned`.
fn send_slot_noting(tx: &mut frames::FrameSender, i: u64, len: usize, returned: &mut Vec<u32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lease = loop {
        tx.reclaim(|s| returned.push(s)).expect("reclaim");
        if let Some(l) = tx.try_lease() {
            break l;
        }
        assert!(Instant::now() < deadline, "no slot came back");
        let _ = tx.wait_returns(Some(Duration::from_millis(10)));
    };
    lease.as_mut()[..len].copy_from_slice(&pattern(i, len));
    loop {
        match tx.send_lease(lease, len, &meta(i)) {
            Ok(()) => return,
            Err(e) if matches!(e.error, Error::Full) && Instant::now() < deadline => {
                lease = e.lease;
                tx.wait_writable(Some(Duration::from_millis(10)))
                    .or_else(|e| if e.is_would_block() { Ok(()) } else { Err(e) })
                    .expect("room");
            }
            Err(e) => panic!("frame {i}: {e}"),
        }
    }
}

/// Frame `i` as a blob (it does not fit the current slots).
fn send_blob(tx: &mut frames::FrameSender, i: u64, len: usize) {
    let blob = Blob::copy_of(&pattern(i, len)).expect("blob");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.reclaim(|_| {}).expect("reclaim");
        match tx.send_blob(&blob, &meta(i), &FrameExtras::default()) {
            Ok(()) => return,
            Err(Error::Full) if Instant::now() < deadline => {
                let _ = tx.wait_returns(Some(Duration::from_millis(10)));
            }
            Err(e) => panic!("blob {i}: {e}"),
        }
    }
}

fn expect_frame(rx: &mut frames::FrameReceiver, i: u64, len: usize) -> frames::FrameRef {
    match rx.recv(T).expect("recv") {
        Received::Frame(f) => {
            assert_eq!(f.meta().pts, i * 1000, "frame {i} out of order");
            assert_eq!(f.meta().offset, i);
            assert!(f.bytes() == pattern(i, len).as_slice(), "frame {i} content");
            f
        }
        other => panic!("frame {i} expected, got {other:?}"),
    }
}

const SMALL: usize = 4000;
const BIG: usize = 20_000;
/// Frames in the first arena, as blobs while the consumer drains it, and
/// in the new arena.
const BEFORE: u64 = 10;
const AFTER: u64 = 40;

// ----------------------------------------------------------------- processes

/// Entry point of the re-executed child; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let path = std::env::var("SOCK").unwrap_or_default();
    match role.as_str() {
        "switch-receiver" => switch_receiver(&path),
        "many-switches" => many_switches(),
        "hostile-switcher" => hostile_switcher(&path),
        other => panic!("unknown role {other}"),
    }
}

/// The consumer of `frames_cross_an_arena_switch_to_another_process`.
fn switch_receiver(path: &str) {
    let mut rx = frames::connect(path, &FrameConfig::consumer()).expect("connect");
    assert!(matches!(rx.recv(T), Ok(Received::Caps(c)) if c == "small"));
    let first_arena = rx.arena().slot_size();
    // Frames in the first arena; the last one is held until the first blob.
    let mut last = None;
    for i in 0..BEFORE {
        last = Some(expect_frame(&mut rx, i, SMALL));
    }
    assert!(matches!(rx.recv(T), Ok(Received::Caps(c)) if c == "big"));
    // The first big frame comes as a blob (we hold a slot of the old
    // arena); it is kept across the switch.
    let blob = expect_frame(&mut rx, BEFORE, BIG);
    assert!(blob.is_immutable(), "a blob before the switch");
    assert_eq!(rx.arena_switches(), 0);
    drop(last.take()); // the old arena drains: the producer may switch
    let mut frames = BEFORE + 1;
    for i in BEFORE + 1..BEFORE + 1 + AFTER {
        let f = expect_frame(&mut rx, i, BIG);
        assert!(!f.is_immutable(), "frame {i} in a slot of the new arena");
        frames += 1;
    }
    // The blob received before the switch is still readable.
    assert!(blob.bytes() == pattern(BEFORE, BIG).as_slice(), "held blob");
    drop(blob);
    assert!(matches!(rx.recv(T), Ok(Received::Eos)));
    println!(
        "frames={frames} switches={} first_slot={first_arena} slot={}",
        rx.arena_switches(),
        rx.arena().slot_size()
    );
}

#[test]
fn frames_cross_an_arena_switch_to_another_process() {
    let path = common::sock_path("switch");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let child = common::spawn_child(
        "child_entry",
        "switch-receiver",
        &[("SOCK", path.display().to_string())],
    );
    let conn = listener.accept(T).expect("accept");
    let mut tx = frames::serve(conn, &FrameConfig::new(8, 4096)).expect("serve");
    tx.send_caps("small").expect("caps");
    for i in 0..BEFORE {
        send_slot(&mut tx, i, SMALL);
    }
    // The format grows: a new arena with bigger slots (and fewer of them).
    let big = Arena::new(&FrameConfig::new(4, 32 << 10)).expect("arena");
    tx.send_caps("big").expect("caps");
    // The consumer holds its last frame until it has the first blob: no
    // switch before that.
    tx.reclaim(|_| {}).expect("reclaim");
    assert!(!tx.switch_arena(&big).expect("switch"), "switched early");
    send_blob(&mut tx, BEFORE, BIG);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.reclaim(|_| {}).expect("reclaim");
        if tx.switch_arena(&big).expect("switch") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer never drained the old arena"
        );
        let _ = tx.wait_returns(Some(Duration::from_millis(10)));
    }
    assert!(tx.is_on(&big));
    assert_eq!(tx.slots(), 4);
    // More frames than slots: the new arena's slots come back and are reused.
    let mut reclaimed = Vec::new();
    for i in BEFORE + 1..BEFORE + 1 + AFTER {
        send_slot_noting(&mut tx, i, BIG, &mut reclaimed);
    }
    loop {
        match tx.send_eos() {
            Ok(()) => break,
            Err(Error::Full) => tx.wait_writable(T).expect("room"),
            Err(e) => panic!("{e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (tx.in_flight() > 0 || tx.blobs_in_flight() > 0) && Instant::now() < deadline {
        let _ = tx.wait_returns(Some(Duration::from_millis(50)));
        tx.reclaim(|s| reclaimed.push(s)).expect("reclaim");
    }
    assert_eq!(tx.in_flight(), 0, "every slot of the new arena came back");
    assert_eq!(tx.blobs_in_flight(), 0, "the blob came back");
    assert_eq!(tx.bad_returns(), 0);
    assert_eq!(reclaimed.len() as u64, AFTER, "returns after the switch");
    assert!(
        reclaimed.iter().all(|&s| s < 3),
        "{reclaimed:?}: new-arena frame slots"
    );
    drop(tx);
    let out = common::finish(child);
    assert!(
        out.contains(&format!("frames={} switches=1 ", BEFORE + 1 + AFTER)),
        "{out}"
    );
    assert!(out.contains("first_slot=4096 slot=32768"), "{out}");
}

/// Mappings of arenas (the library's and this test's) in this process.
fn arena_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("maps")
        .lines()
        .filter(|l| l.contains("shmring-arena") || l.contains("test-arena"))
        .count()
}

/// 200 honest switches, then 200 raw ones that reuse one memfd, each with a
/// frame: fd and mapping counts come back to where they were.
fn many_switches() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    let round = |tx: &mut frames::FrameSender, rx: &mut frames::FrameReceiver, i: u64| {
        let a = Arena::new(&FrameConfig::new(4, 4096 + 64 * (i as usize % 3))).expect("arena");
        assert!(tx.switch_arena(&a).expect("switch"));
        drop(a); // the sender keeps it
        send_slot(tx, i, 100);
        drop(expect_frame(rx, i, 100));
        tx.reclaim(|_| {}).expect("reclaim");
    };
    round(&mut tx, &mut rx, 0);
    let (fds, maps) = (common::fd_count(), arena_mappings());
    for i in 1..200 {
        round(&mut tx, &mut rx, i);
    }
    let honest = (common::fd_count(), arena_mappings());
    // A hostile producer: the same valid memfd announced again and again.
    let seg = sealed_arena(4 * 4096);
    for i in 0..200u64 {
        let fd = seg.try_clone_fd().expect("dup");
        announce(&tx, 4, 4096, Some(fd.as_fd()));
        // 200 honest rounds sent a switch and a frame each.
        tx.send_raw(switch_descriptor(400 + i, 4, 4096))
            .expect("raw");
        assert!(matches!(rx.try_recv(), Ok(None)), "switch {i}");
    }
    drop(seg);
    println!(
        "fds={fds} maps={maps} honest_fds={} honest_maps={} hostile_fds={} hostile_maps={} switches={}",
        honest.0,
        honest.1,
        common::fd_count(),
        arena_mappings(),
        rx.arena_switches()
    );
}

#[test]
fn many_switches_leak_no_fd_and_no_mapping() {
    let out = common::finish(common::spawn_child("child_entry", "many-switches", &[]));
    let f = |k: &str| common::field(&out, k).unwrap_or_else(|| panic!("{k} in {out}"));
    assert_eq!(f("switches"), 400, "{out}");
    assert_eq!(f("honest_fds"), f("fds"), "{out}");
    assert_eq!(f("hostile_fds"), f("fds"), "{out}");
    assert_eq!(f("honest_maps"), f("maps"), "{out}");
    assert_eq!(f("hostile_maps"), f("maps"), "{out}");
}

// ------------------------------------------------------------ hostile producer

/// A producer process that serves honestly, sends a frame, and once it came
/// back switches its consumer to a memfd without `F_SEAL_FUTURE_WRITE`
/// (one it could map writable again at any time; it does).
fn hostile_switcher(path: &str) {
    use shmring::segment::Access;
    let listener = Listener::bind(path, &Default::default()).expect("bind");
    let conn = listener.accept(T).expect("accept");
    let mut tx = frames::serve(conn, &FrameConfig::new(4, 4096)).expect("serve");
    send_slot(&mut tx, 0, 100);
    let seg = Segment::create("test-arena", 4 * 8192).expect("memfd");
    let map = seg.map(4 * 8192, Access::ReadWrite).expect("map");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tx.in_flight() > 0 && Instant::now() < deadline {
        let _ = tx.wait_returns(Some(Duration::from_millis(10)));
        tx.reclaim(|_| {}).expect("reclaim");
    }
    announce(&tx, 4, 8192, Some(seg.as_fd()));
    tx.send_raw(switch_descriptor(1, 4, 8192)).expect("raw");
    // It would rewrite frames under the consumer from here on.
    // SAFETY: the mapping is live (`map`) and 4 * 8192 bytes long.
    unsafe { std::ptr::write_bytes(map.as_ptr(), 0xee, 4 * 8192) };
    while tx.is_peer_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("consumer gone={}", !tx.is_peer_alive());
}

#[test]
fn a_producer_process_switching_to_a_writable_arena_is_refused() {
    let path = common::sock_path("hostile-switch");
    let child = common::spawn_child(
        "child_entry",
        "hostile-switcher",
        &[("SOCK", path.display().to_string())],
    );
    let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect");
    drop(expect_frame(&mut rx, 0, 100));
    let e = rx.recv(T).expect_err("took a writable arena");
    assert!(
        matches!(e, Error::BadSegment(ref m) if m.contains("FUTURE_WRITE")),
        "{e}"
    );
    assert_eq!(rx.arena_switches(), 0);
    drop(rx);
    let out = common::finish(child);
    assert!(out.contains("consumer gone=true"), "{out}");
}

/// The message header (magic "SRMS", kind 6: an arena, slots, slot size).
fn arena_message(slots: u64, slot_size: u64) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"SRMS");
    m.extend_from_slice(&6u32.to_le_bytes());
    m.extend_from_slice(&slots.to_le_bytes());
    m.extend_from_slice(&slot_size.to_le_bytes());
    m
}

/// Sends an arena message with `fd` (or none) on the producer's end.
fn announce(
    tx: &frames::FrameSender,
    slots: u64,
    slot_size: u64,
    fd: Option<std::os::fd::BorrowedFd<'_>>,
) {
    let fds: Vec<_> = fd.into_iter().collect();
    handshake::send_with_fds(tx.message_fd(), &arena_message(slots, slot_size), &fds)
        .expect("arena message");
}

fn switch_descriptor(seq: u64, slots: u64, slot_size: u64) -> Descriptor {
    let mut d = Descriptor::zeroed();
    d.kind = Kind::Arena as u32;
    d.seq = seq;
    d.args[0] = slots;
    d.args[1] = slot_size;
    d
}

/// A memfd sealed as an arena must be (shrink, grow, future write).
fn sealed_arena(len: usize) -> Segment {
    let seg = Segment::create("test-arena", len).expect("memfd");
    seg.seal_future_write().expect("seal");
    seg
}

/// A fresh pair, the raw switch `d` after `fd` (if any) announced with the
/// descriptor's geometry: what the consumer's receive says.
fn hostile_switch(fd: Option<OwnedFd>, d: Descriptor, cfg: &FrameConfig) -> Error {
    let (mut tx, mut rx) = frames::pair(cfg).expect("pair");
    if let Some(fd) = &fd {
        announce(&tx, d.args[0], d.args[1], Some(fd.as_fd()));
    }
    tx.send_raw(d).expect("raw");
    rx.recv(T).expect_err("a hostile switch was taken")
}

#[test]
fn hostile_switches_are_clean_errors() {
    let cfg = FrameConfig::new(4, 4096).max_arena(1 << 20);
    let sealed = || Some(sealed_arena(8 * 8192).into_fd());
    let bad_segment = |e: &Error| matches!(e, Error::BadSegment(_));
    let bad_descriptor = |e: &Error| matches!(e, Error::BadDescriptor(_));
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, Option<OwnedFd>, Descriptor, Check)> = vec![
        ("no fd", None, switch_descriptor(0, 8, 8192), bad_descriptor),
        (
            "a writable memfd (no future-write seal)",
            Some(Segment::create("w", 8 * 8192).expect("memfd").into_fd()),
            switch_descriptor(0, 8, 8192),
            bad_segment,
        ),
        (
            "shorter than its geometry",
            Some(sealed_arena(8 * 8192 - 4096).into_fd()),
            switch_descriptor(0, 8, 8192),
            bad_segment,
        ),
        (
            "over max_arena",
            sealed(),
            switch_descriptor(0, 8, 1 << 20),
            bad_descriptor,
        ),
        (
            "more slots than the return ring holds",
            sealed(),
            switch_descriptor(0, 4096, 64),
            bad_descriptor,
        ),
        (
            "one slot",
            sealed(),
            switch_descriptor(0, 1, 8192),
            bad_descriptor,
        ),
        (
            "slot size 0",
            sealed(),
            switch_descriptor(0, 8, 0),
            bad_descriptor,
        ),
        (
            "slot size not a multiple of 64",
            sealed(),
            switch_descriptor(0, 8, 8100),
            bad_descriptor,
        ),
        (
            "u64::MAX slots",
            sealed(),
            switch_descriptor(0, u64::MAX, u64::MAX),
            bad_descriptor,
        ),
    ];
    for (what, fd, d, check) in cases {
        let e = hostile_switch(fd, d, &cfg);
        assert!(check(&e), "{what}: {e:?}");
    }
}

#[test]
fn a_switch_whose_message_disagrees_or_is_not_an_arena_is_an_error() {
    let cfg = FrameConfig::new(4, 4096);
    // The socket says 8 slots, the descriptor 16.
    let (mut tx, mut rx) = frames::pair(&cfg).expect("pair");
    let seg = sealed_arena(16 * 8192);
    announce(&tx, 8, 8192, Some(seg.as_fd()));
    tx.send_raw(switch_descriptor(0, 16, 8192)).expect("raw");
    assert!(matches!(rx.recv(T), Err(Error::BadDescriptor(_))));
    // A blob's message comes where the arena's was due.
    let (mut tx, mut rx) = frames::pair(&cfg).expect("pair");
    let mut blob_message = arena_message(0, 100);
    blob_message[4..8].copy_from_slice(&1u32.to_le_bytes());
    let seg = sealed_arena(8 * 8192);
    handshake::send_with_fds(tx.message_fd(), &blob_message, &[seg.as_fd()]).expect("blob message");
    tx.send_raw(switch_descriptor(0, 8, 8192)).expect("raw");
    assert!(matches!(rx.recv(T), Err(Error::BadDescriptor(_))));
}

#[test]
fn a_switch_while_the_consumer_holds_old_slots_is_an_error() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    send_slot(&mut tx, 0, 100);
    let held = expect_frame(&mut rx, 0, 100);
    // The honest sender refuses...
    let big = Arena::new(&FrameConfig::new(4, 8192)).expect("arena");
    assert!(!tx.switch_arena(&big).expect("switch"));
    // ...a hostile one switches anyway.
    let seg = sealed_arena(4 * 8192);
    announce(&tx, 4, 8192, Some(seg.as_fd()));
    tx.send_raw(switch_descriptor(1, 4, 8192)).expect("raw");
    let e = rx.recv(T).expect_err("switched under a held slot");
    assert!(
        matches!(e, Error::BadDescriptor(ref m) if m.contains("holds 1")),
        "{e}"
    );
    // The frame held stays readable.
    assert!(held.bytes() == pattern(0, 100).as_slice());
}

#[test]
fn the_sender_refuses_an_arena_its_consumer_cannot_return() {
    let (mut tx, _rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    // A return ring for 4 slots and 64 blobs has room for 128 entries.
    assert_eq!(tx.max_arena_slots(), 64);
    let many = Arena::new(&FrameConfig::new(65, 4096)).expect("arena");
    assert!(matches!(
        tx.switch_arena(&many),
        Err(Error::InvalidArgument(_))
    ));
    let ok = Arena::new(&FrameConfig::new(64, 4096)).expect("arena");
    assert!(tx.switch_arena(&ok).expect("switch"));
    assert!(tx.switch_arena(&ok).expect("again: a no-op"));
    assert_eq!(tx.arena_switches(), 1);
}

#[test]
fn a_run_of_switches_does_not_hold_recv_past_its_deadline() {
    // 100 switches queued, more than one receive takes (64): `recv` with a
    // deadline already passed returns `Timeout` after the first run instead
    // of taking them all, so a producer that keeps switching cannot hold
    // the consumer in `recv` past its timeout.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    let seg = sealed_arena(4 * 4096);
    for seq in 0..100u64 {
        announce(&tx, 4, 4096, Some(seg.as_fd()));
        tx.send_raw(switch_descriptor(seq, 4, 4096)).expect("raw");
    }
    assert!(matches!(rx.recv(Some(Duration::ZERO)), Err(Error::Timeout)));
    assert_eq!(rx.arena_switches(), 64);
    // The rest on the next call, and then the stream goes on.
    assert!(matches!(rx.recv(Some(Duration::ZERO)), Err(Error::Timeout)));
    assert_eq!(rx.arena_switches(), 100);
}

#[test]
fn strings_sent_while_a_switch_waits_do_not_hold_it_up() {
    // A consumer that holds a frame and has not yet read the metas and caps
    // sent after it: once it drops the frame, it holds no slot of the old
    // arena (the strings went as blobs), so the switch goes through.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    send_slot(&mut tx, 0, 100);
    let held = expect_frame(&mut rx, 0, 100);
    let big = Arena::new(&FrameConfig::new(4, 1 << 16)).expect("arena");
    assert!(!tx.switch_arena(&big).expect("switch"));
    tx.send_caps("video/x-raw,width=320").expect("caps");
    tx.send_metas("crop x=1").expect("metas");
    drop(held);
    tx.reclaim(|_| {}).expect("reclaim");
    assert!(tx
        .switch_arena(&big)
        .expect("switch after the frame came back"));
    send_slot(&mut tx, 1, 40_000);
    assert!(matches!(rx.recv(T), Ok(Received::Caps(c)) if c == "video/x-raw,width=320"));
    assert!(matches!(rx.recv(T), Ok(Received::Metas(m)) if m == "crop x=1"));
    drop(expect_frame(&mut rx, 1, 40_000));
    assert_eq!(rx.arena_switches(), 1);
}

#[test]
fn a_switch_to_more_slots_uses_and_returns_all_of_them() {
    // 4 slots, then 64: slots past the first arena's count are received,
    // held and returned like any other.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    let many = Arena::new(&FrameConfig::new(64, 4096)).expect("arena");
    assert!(tx.switch_arena(&many).expect("switch"));
    let mut held = Vec::new();
    for i in 0..62u64 {
        send_slot(&mut tx, i, 64);
        held.push(expect_frame(&mut rx, i, 64));
    }
    assert!(held.iter().any(|f| f.slot() >= 60), "slots past 4 in use");
    assert_eq!(tx.in_flight(), 62);
    drop(held);
    tx.reclaim(|_| {}).expect("reclaim");
    assert_eq!(tx.in_flight(), 0);
    assert_eq!(tx.bad_returns(), 0);
}

#[test]
fn a_slot_past_a_smaller_new_arena_is_a_bad_descriptor() {
    // 8 slots, then 4: a frame in slot 6 was valid before the switch and
    // is not after it.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(8, 4096)).expect("pair");
    let few = Arena::new(&FrameConfig::new(4, 4096)).expect("arena");
    assert!(tx.switch_arena(&few).expect("switch"));
    let mut d = Descriptor::zeroed();
    d.kind = Kind::Frame as u32;
    d.seq = 1;
    d.slot = 6;
    d.size = 10;
    tx.send_raw(d).expect("raw");
    assert!(matches!(rx.recv(T), Err(Error::BadDescriptor(_))));
}
