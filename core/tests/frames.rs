//! The frame stream: order of frames and events, zero-copy slots, slot
//! recycling, a real second process over a socket path, and hostile peers on
//! both sides.

mod common;

use std::time::{Duration, Instant};

use shmring::frames::{
    self, Descriptor, FrameConfig, FrameMeta, Kind, Received, SegmentInfo, NONE,
};
use shmring::handshake::Listener;
use shmring::{Error, Zeroable};

const T: Option<Duration> = Some(Duration::from_secs(10));

/// Frame `i` of a deterministic pattern: `len` bytes.
fn pattern(i: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |k| (i as usize * 31 + k * 7) as u8)
}

fn send_frame(tx: &mut frames::FrameSender, i: u64, len: usize) -> shmring::Result<()> {
    let meta = FrameMeta {
        pts: i * 1000,
        dts: NONE,
        duration: 1000,
        offset: i,
        offset_end: i + 1,
        flags: (i % 7) as u32,
    };
    loop {
        tx.reclaim(|_| {})?;
        let Some(mut lease) = tx.try_lease() else {
            tx.wait_returns(T)?;
            continue;
        };
        for (d, s) in lease.as_mut()[..len].iter_mut().zip(pattern(i, len)) {
            *d = s;
        }
        // On `Full` the lease comes back: it is dropped here (the slot is
        // free again), then wait and retry with a fresh one.
        match tx.send_lease(lease, len, &meta) {
            Err(e) if matches!(e.error, Error::Full) => tx.wait_writable(T)?,
            r => return r.map_err(Error::from),
        }
    }
}

fn check_frame(f: &frames::FrameRef, i: u64, len: usize) {
    assert_eq!(f.meta().pts, i * 1000);
    assert_eq!(f.meta().offset, i);
    assert_eq!(f.meta().flags, (i % 7) as u32);
    assert_eq!(f.bytes().len(), len);
    assert!(
        f.bytes().iter().copied().eq(pattern(i, len)),
        "frame {i} content"
    );
}

#[test]
fn events_and_frames_arrive_in_order() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(8, 1000)).expect("pair");
    assert_eq!(tx.slot_size(), 1024, "slot size rounds up to 64");
    let mut got = Vec::new();
    // Strings go in the string slot, or in a free frame slot while a consumer
    // holds that one.
    let pump = |rx: &mut frames::FrameReceiver, got: &mut Vec<Received>| {
        while let Some(m) = rx.try_recv().expect("recv") {
            got.push(m);
        }
    };
    let string = |tx: &mut frames::FrameSender,
                  f: &dyn Fn(&mut frames::FrameSender) -> shmring::Result<()>| {
        tx.reclaim(|_| {}).expect("reclaim");
        f(tx).expect("string");
    };
    string(&mut tx, &|tx| tx.send_stream_start("stream-0"));
    tx.send_tags("x")
        .expect("string slot busy: a frame slot carries it");
    pump(&mut rx, &mut got);
    assert!(matches!(got.pop(), Some(Received::Tags(t)) if t == "x"));
    string(&mut tx, &|tx| tx.send_caps("video/x-raw,width=2,height=2"));
    tx.send_segment(&SegmentInfo::time()).expect("segment");
    send_frame(&mut tx, 0, 16).expect("frame");
    pump(&mut rx, &mut got);
    string(&mut tx, &|tx| tx.send_tags("taglist, title=(string)x"));
    pump(&mut rx, &mut got);
    string(&mut tx, &|tx| tx.send_caps("video/x-raw,width=4,height=4"));
    send_frame(&mut tx, 1, 64).expect("frame");
    tx.send_gap(5000, 10).expect("gap");
    tx.send_flush_start().expect("flush");
    tx.send_flush_stop(true).expect("flush");
    tx.send_eos().expect("eos");
    pump(&mut rx, &mut got);

    assert!(matches!(&got[0], Received::StreamStart(s) if s.id == "stream-0"));
    assert!(matches!(&got[1], Received::Caps(s) if s.ends_with("height=2")));
    assert!(matches!(&got[2], Received::Segment(s) if *s == SegmentInfo::time()));
    match &got[3] {
        Received::Frame(f) => check_frame(f, 0, 16),
        m => panic!("{m:?}"),
    }
    assert!(matches!(&got[4], Received::Tags(s) if s.contains("title")));
    assert!(matches!(&got[5], Received::Caps(s) if s.ends_with("height=4")));
    match &got[6] {
        Received::Frame(f) => check_frame(f, 1, 64),
        m => panic!("{m:?}"),
    }
    assert!(matches!(
        got[7],
        Received::Gap {
            pts: 5000,
            duration: 10
        }
    ));
    assert!(matches!(got[8], Received::FlushStart));
    assert!(matches!(got[9], Received::FlushStop { reset_time: true }));
    assert!(matches!(got[10], Received::Eos));
    assert_eq!(got.len(), 11);

    // The last string gave its slot back at once; frames when dropped.
    assert_eq!(tx.reclaim(|_| {}).expect("reclaim"), 1);
    assert_eq!(tx.in_flight(), 2);
    drop(got);
    assert_eq!(tx.reclaim(|_| {}).expect("reclaim"), 2);
    assert_eq!(tx.in_flight(), 0);
}

#[test]
fn frames_are_zero_copy_views_of_the_read_only_arena() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(2, 4096)).expect("pair");
    send_frame(&mut tx, 9, 100).expect("frame");
    let Some(Received::Frame(f)) = rx.try_recv().expect("recv") else {
        panic!("no frame")
    };
    let arena = rx.arena();
    let p = f.bytes().as_ptr() as usize;
    let base = arena.as_ptr() as usize;
    assert!(
        p >= base && p + 100 <= base + arena.len(),
        "frame bytes lie in the mapping"
    );
    // Read-only: the mapping's pages are not writable (see /proc/self/maps).
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let line = maps
        .lines()
        .find(|l| {
            let r = l.split_whitespace().next().unwrap_or("");
            let (a, b) = r.split_once('-').unwrap_or(("0", "0"));
            let a = usize::from_str_radix(a, 16).unwrap_or(0);
            let b = usize::from_str_radix(b, 16).unwrap_or(0);
            a <= p && p < b
        })
        .expect("mapping of the frame");
    assert!(
        line.split_whitespace()
            .nth(1)
            .expect("perms")
            .starts_with("r--s"),
        "{line}"
    );
}

#[test]
fn slots_are_recycled_and_a_sent_slot_is_never_leased() {
    // Four slots: three for frames, one for strings.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 256)).expect("pair");
    let mut held = Vec::new();
    for i in 0..3 {
        send_frame(&mut tx, i, 8).expect("frame");
        held.push(rx.try_recv().expect("recv").expect("frame"));
    }
    assert!(tx.try_lease().is_none(), "every slot is in flight");
    held.pop();
    tx.reclaim(|_| {}).expect("reclaim");
    let lease = tx.try_lease().expect("the returned slot");
    assert!(tx.try_lease().is_none());
    drop(lease);
    assert!(tx.try_lease().is_some());
    // Sending by slot number needs a lease: a slot nobody leased is refused.
    let err = tx.send_frame(2, 0, 8, &FrameMeta::default());
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
    assert!(matches!(
        tx.send_frame(0, 250, 10, &FrameMeta::default()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn many_frames_through_a_small_arena() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096).descriptors(8)).expect("pair");
    let n = 20_000u64;
    let t = std::thread::spawn(move || -> shmring::Result<()> {
        for i in 0..n {
            send_frame(&mut tx, i, 1 + (i as usize % 4096))?;
        }
        tx.send_eos()?;
        Ok(())
    });
    let mut i = 0;
    loop {
        match rx.recv(T).expect("recv") {
            Received::Frame(f) => {
                check_frame(&f, i, 1 + (i as usize % 4096));
                i += 1;
            }
            Received::Eos => break,
            m => panic!("{m:?}"),
        }
    }
    assert_eq!(i, n);
    t.join().expect("producer thread").expect("producer");
}

/// Sends one raw descriptor to a fresh receiver and returns what it says.
fn receive_raw(d: Descriptor) -> shmring::Result<Option<Received>> {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 1024)).expect("pair");
    tx.send_raw(d).expect("raw");
    rx.try_recv()
}

fn raw(kind: u32, slot: u32, offset: u32, size: u32) -> Descriptor {
    let mut d = Descriptor::zeroed();
    d.kind = kind;
    d.slot = slot;
    d.offset = offset;
    d.size = size;
    d
}

#[test]
fn hostile_producer_descriptors_are_errors() {
    let frame = Kind::Frame as u32;
    let cases = [
        ("slot out of range", raw(frame, 4, 0, 1)),
        ("slot u32::MAX", raw(frame, u32::MAX, 0, 1)),
        ("bytes past the slot", raw(frame, 0, 1000, 25)),
        ("offset overflow", raw(frame, 0, u32::MAX, u32::MAX)),
        ("unknown kind", raw(99, 0, 0, 1)),
        ("kind zero", raw(0, 0, 0, 0)),
        ("caps past the slot", raw(Kind::Caps as u32, 1, 0, 2000)),
    ];
    for (what, d) in cases {
        match receive_raw(d) {
            Err(Error::BadDescriptor(m)) => eprintln!("{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // A segment with rate NaN.
    let mut d = raw(Kind::Segment as u32, 0, 0, 0);
    d.args[1] = f64::NAN.to_bits();
    assert!(matches!(receive_raw(d), Err(Error::BadDescriptor(_))));
    // A sequence number out of order.
    let mut d = raw(Kind::Eos as u32, 0, 0, 0);
    d.seq = 5;
    assert!(matches!(receive_raw(d), Err(Error::BadDescriptor(_))));
}

#[test]
fn hostile_producer_invalid_utf8_and_double_send() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 1024)).expect("pair");
    let mut lease = tx.try_lease().expect("lease");
    lease.as_mut()[..2].copy_from_slice(&[0xff, 0xfe]);
    let slot = lease.index();
    let mut d = raw(Kind::Caps as u32, slot, 0, 2);
    tx.send_raw(d).expect("raw");
    assert!(matches!(rx.try_recv(), Err(Error::BadDescriptor(_))));

    // The same slot sent twice while the consumer holds it.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 1024)).expect("pair");
    d = raw(Kind::Frame as u32, 1, 0, 8);
    tx.send_raw(d).expect("raw");
    d.seq = 1;
    tx.send_raw(d).expect("raw");
    let first = rx.try_recv().expect("first is fine");
    assert!(matches!(first, Some(Received::Frame(_))));
    assert!(matches!(rx.try_recv(), Err(Error::BadDescriptor(_))));
}

#[test]
fn hostile_consumer_returns_are_ignored_and_counted() {
    let (mut tx, rx) = frames::pair(&FrameConfig::new(4, 1024)).expect("pair");
    rx.return_raw(2).expect("raw return");
    rx.return_raw(u32::MAX).expect("raw return");
    assert_eq!(
        tx.reclaim(|_| panic!("nothing was held")).expect("reclaim"),
        0
    );
    assert_eq!(tx.bad_returns(), 2);

    // Returned twice: the second is ignored.
    let mut lease = tx.try_lease().expect("lease");
    lease.as_mut()[0] = 1;
    let slot = lease.index();
    tx.send_lease(lease, 1, &FrameMeta::default())
        .expect("send");
    rx.return_raw(slot).expect("raw return");
    rx.return_raw(slot).expect("raw return");
    assert_eq!(tx.reclaim(|s| assert_eq!(s, slot)).expect("reclaim"), 1);
    assert_eq!(tx.bad_returns(), 3);
    assert_eq!(tx.in_flight(), 0);
}

/// Frames skipped for a consumer are counted on the next frame it gets.
#[test]
fn the_next_frame_tells_how_many_were_missed() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 256)).expect("pair");
    tx.note_missed();
    tx.note_missed();
    send_frame(&mut tx, 0, 8).expect("frame");
    send_frame(&mut tx, 1, 8).expect("frame");
    let missed: Vec<u64> = (0..2).map(|_| expect_frame(&mut rx).missed()).collect();
    assert_eq!(missed, [2, 0]);
}

/// Serves `n` consumers from one arena over a real socket (fan-out).
fn fan_out(
    n: usize,
    cfg: &FrameConfig,
) -> (
    frames::Arena,
    Vec<frames::FrameSender>,
    Vec<frames::FrameReceiver>,
) {
    let path = common::sock_path("fan-out");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let arena = frames::Arena::new(cfg).expect("arena");
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..n {
        let p = path.clone();
        let c = cfg.clone();
        let client = std::thread::spawn(move || frames::connect(&p, &c).expect("connect"));
        let conn = listener.accept(T).expect("accept");
        txs.push(frames::serve_arena(conn, cfg, arena.clone()).expect("serve"));
        rxs.push(client.join().expect("client thread"));
    }
    (arena, txs, rxs)
}

fn expect_frame(rx: &mut frames::FrameReceiver) -> frames::FrameRef {
    match rx.recv(T) {
        Ok(Received::Frame(f)) => f,
        other => panic!("{other:?}"),
    }
}

/// One slot sent to three consumers is free again only after all three
/// returned it; until then it is never leased for writing.
#[test]
fn fan_out_frees_a_slot_when_every_consumer_returned_it() {
    let cfg = FrameConfig::new(3, 256);
    let (arena, mut txs, mut rxs) = fan_out(3, &cfg);
    let mut lease = arena.try_lease().expect("lease");
    lease.as_mut()[..4].copy_from_slice(b"fan!");
    let slot = lease.index();
    for tx in &mut txs {
        tx.send_frame(slot, 0, 4, &FrameMeta::default())
            .expect("send");
    }
    drop(lease);
    assert_eq!(arena.holders(slot), 3);
    let mut frames: Vec<_> = rxs.iter_mut().map(expect_frame).collect();
    for f in &frames {
        assert_eq!(f.bytes(), b"fan!");
    }
    for (k, tx) in txs.iter_mut().enumerate() {
        drop(frames.remove(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        while tx.in_flight() > 0 && Instant::now() < deadline {
            tx.reclaim(|_| {}).expect("reclaim");
        }
        assert_eq!(arena.holders(slot), 2 - k as u32, "after consumer {k}");
        let leased: Vec<_> = std::iter::from_fn(|| arena.try_lease()).collect();
        let free_again = leased.iter().any(|l| l.index() == slot);
        assert_eq!(free_again, k == 2, "slot leasable after {} returns", k + 1);
    }
}

/// A consumer that returns a slot it was never sent, one it returned
/// already, or garbage cannot free a slot another consumer still reads.
#[test]
fn fan_out_forged_returns_do_not_free_another_consumers_slot() {
    let cfg = FrameConfig::new(4, 256);
    let (arena, mut txs, mut rxs) = fan_out(2, &cfg);
    let mut lease = arena.try_lease().expect("lease");
    lease.as_mut()[..4].copy_from_slice(b"mine");
    let slot = lease.index();
    txs[0]
        .send_frame(slot, 0, 4, &FrameMeta::default())
        .expect("send");
    drop(lease);
    let held = expect_frame(&mut rxs[0]);
    for forged in [slot, slot, u32::MAX, 2] {
        rxs[1].return_raw(forged).expect("raw return");
    }
    assert_eq!(
        txs[1]
            .reclaim(|_| panic!("nothing was held"))
            .expect("reclaim"),
        0
    );
    assert_eq!(txs[1].bad_returns(), 4);
    assert_eq!(arena.holders(slot), 1);
    let leased: Vec<_> = std::iter::from_fn(|| arena.try_lease()).collect();
    assert!(
        leased.iter().all(|l| l.index() != slot),
        "slot leased while read"
    );
    assert_eq!(held.bytes(), b"mine");
}

/// A consumer that goes away (its sender dropped) lets go of its slots
/// only; what the other consumer holds stays held.
#[test]
fn fan_out_dropping_one_consumer_keeps_the_others_holds() {
    let cfg = FrameConfig::new(4, 256);
    let (arena, mut txs, mut rxs) = fan_out(2, &cfg);
    let lease = arena.try_lease().expect("lease");
    let slot = lease.index();
    for tx in &mut txs {
        tx.send_frame(slot, 0, 8, &FrameMeta::default())
            .expect("send");
    }
    drop(lease);
    let _kept = expect_frame(&mut rxs[0]);
    drop(txs.remove(1));
    assert_eq!(arena.holders(slot), 1);
    assert_eq!(arena.in_flight(), 1);
}

#[test]
fn geometry_limits_are_enforced() {
    assert!(frames::pair(&FrameConfig::new(0, 1024)).is_err());
    assert!(
        frames::pair(&FrameConfig::new(1, 1024)).is_err(),
        "no slot left for frames"
    );
    assert!(frames::pair(&FrameConfig::new(frames::MAX_SLOTS + 1, 64)).is_err());
    assert!(frames::pair(&FrameConfig::new(4, 0)).is_err());
    assert!(frames::pair(&FrameConfig::new(4, 1 << 20).max_arena(1 << 20)).is_err());
}

// ---------------------------------------------------------------- processes

const CHILD_FRAMES: u64 = 2000;
const CHILD_LEN: usize = 10_000;

/// Entry point of the re-executed child; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let path = std::env::var("SOCK").unwrap_or_default();
    let cfg = FrameConfig::new(8, CHILD_LEN);
    match role.as_str() {
        "receiver" => {
            let mut rx = frames::connect(&path, &cfg).expect("connect");
            let mut i = 0;
            let mut caps = String::new();
            loop {
                match rx.recv(T) {
                    Ok(Received::Caps(c)) => caps = c,
                    Ok(Received::Frame(f)) => {
                        check_frame(&f, i, CHILD_LEN);
                        i += 1;
                    }
                    Ok(Received::Eos) => break,
                    other => panic!("{other:?}"),
                }
            }
            let after = rx.recv(T).err();
            println!("frames={i} caps={caps} after={after:?}");
        }
        "dying-sender" => {
            let listener = Listener::bind(&path, &Default::default()).expect("bind");
            let conn = listener.accept(T).expect("accept");
            let mut tx = frames::serve(conn, &cfg).expect("serve");
            tx.send_caps("x/y").expect("caps");
            send_frame(&mut tx, 0, CHILD_LEN).expect("frame");
            println!("sent");
            // SAFETY: _exit ends the process at once, skipping destructors (a crash).
            unsafe { libc::_exit(0) };
        }
        "leak-check" => {
            let round = || {
                let path = common::sock_path("leak");
                let listener = Listener::bind(&path, &Default::default()).expect("bind");
                let p = path.clone();
                let cfg2 = cfg.clone();
                let t = std::thread::spawn(move || {
                    let mut rx = frames::connect(&p, &cfg2).expect("connect");
                    while let Ok(m) = rx.recv(T) {
                        drop(m);
                    }
                });
                let mut tx =
                    frames::serve(listener.accept(T).expect("accept"), &cfg).expect("serve");
                for i in 0..20 {
                    send_frame(&mut tx, i, 100).expect("frame");
                }
                drop(tx);
                t.join().expect("receiver");
                drop(listener);
                let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
            };
            round();
            let before = common::fd_count();
            for _ in 0..10 {
                round();
            }
            println!("before={before} after={}", common::fd_count());
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn frames_cross_to_another_process() {
    let path = common::sock_path("frames");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let child = common::spawn_child(
        "child_entry",
        "receiver",
        &[("SOCK", path.display().to_string())],
    );
    let conn = listener.accept(T).expect("accept");
    let mut tx = frames::serve(conn, &FrameConfig::new(8, CHILD_LEN)).expect("serve");
    tx.send_caps("video/x-raw,format=GRAY8,width=100,height=100")
        .expect("caps");
    for i in 0..CHILD_FRAMES {
        send_frame(&mut tx, i, CHILD_LEN).expect("frame");
    }
    loop {
        match tx.send_eos() {
            Ok(()) => break,
            Err(Error::Full) => tx.wait_writable(T).expect("room"),
            Err(e) => panic!("{e}"),
        }
    }
    // Wait for the consumer to give everything back before hanging up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tx.in_flight() > 0 && Instant::now() < deadline {
        let _ = tx.wait_returns(Some(Duration::from_millis(100)));
        tx.reclaim(|_| {}).expect("reclaim");
    }
    assert_eq!(tx.in_flight(), 0, "every slot came back");
    drop(tx);
    let out = common::finish(child);
    assert!(out.contains(&format!("frames={CHILD_FRAMES} ")), "{out}");
    assert!(out.contains("caps=video/x-raw,format=GRAY8"), "{out}");
    assert!(out.contains("after=Some(Disconnected)"), "{out}");
}

/// Connect, stream, hang up, ten times, in a child process of its own (so
/// that no other test opens fds meanwhile): the fd count returns to baseline.
#[test]
fn nothing_leaks_across_connections() {
    let out = common::finish(common::spawn_child("child_entry", "leak-check", &[]));
    let before = common::field(&out, "before");
    assert!(before.is_some(), "{out}");
    assert_eq!(common::field(&out, "after"), before, "{out}");
}

#[test]
fn receiver_sees_a_crashed_sender_as_died_within_a_second() {
    let path = common::sock_path("frames-dying");
    let child = common::spawn_child(
        "child_entry",
        "dying-sender",
        &[("SOCK", path.display().to_string())],
    );
    let mut rx = frames::connect(&path, &FrameConfig::new(8, CHILD_LEN)).expect("connect");
    assert!(matches!(rx.recv(T), Ok(Received::Caps(_))));
    assert!(matches!(rx.recv(T), Ok(Received::Frame(_))));
    let start = Instant::now();
    let r = rx.recv(T);
    // `_exit`: no destructor ran, the rings were not marked closed.
    assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let _ = common::finish(child);
}

/// A stream id (or caps, tags, metas, event) with a NUL byte inside is a bad
/// descriptor: GStreamer aborts on a C string holding one.
#[test]
fn hostile_producer_strings_with_a_nul_byte_are_errors() {
    for kind in [
        Kind::StreamStart,
        Kind::Caps,
        Kind::Tags,
        Kind::Metas,
        Kind::Event,
    ] {
        let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 1024)).expect("pair");
        let mut lease = tx.try_lease().expect("lease");
        lease.as_mut()[..5].copy_from_slice(b"ab\0cd");
        let d = raw(kind as u32, lease.index(), 0, 5);
        tx.send_raw(d).expect("raw");
        match rx.try_recv() {
            Err(Error::BadDescriptor(m)) => assert!(m.contains("NUL"), "{kind:?}: {m}"),
            other => panic!("{kind:?}: {other:?}"),
        }
    }
}
