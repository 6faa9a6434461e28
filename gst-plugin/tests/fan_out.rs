//! One `shmringsink`, several consumers: real `gst-launch-1.0 shmringsrc`
//! processes stopped with SIGSTOP, killed with SIGKILL and restarted, under
//! each slow-consumer policy; a sink killed and restarted under a
//! `reconnect=true` src; consumers joining a stream of delta frames; a
//! hostile consumer forging slot returns next to an honest one.
//!
//! The sink's `stats` property is the witness: per consumer (by pid) frames,
//! drops and slots held; slots in flight and slots leaked.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use shmring::frames::{self, FrameConfig, Received};

/// The tests that run consumer processes and measure rates run one at a
/// time, so that they measure the sink and not each other.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sink playing `SOURCE` with `props`, and three `gst-launch-1.0
/// shmringsrc` consumer processes streaming from it (their pids).
fn three_consumers(tag: &str, props: &str) -> (gst::Pipeline, gst::Element, Children, Vec<u32>) {
    let path = sock(tag);
    let (pipeline, sink) = sink_pipeline(&path, props);
    let mut kids = Children::default();
    let pids: Vec<u32> = (0..3).map(|_| kids.spawn_src(&path)).collect();
    wait_streaming(&sink, &pids);
    (pipeline, sink, kids, pids)
}

/// One reading of the sink's `stats` (one property read, so that the
/// per-consumer counters and the total agree): per consumer pid its
/// counters, and the frames the sink sent in all.
fn snapshot(sink: &gst::Element) -> (std::collections::HashMap<u32, PeerStats>, u64) {
    let s = sink.property::<gst::Structure>("stats");
    let arr = s.get::<gst::Array>("peers").expect("peers");
    let peers = arr
        .iter()
        .map(|v| {
            let p = v.get::<gst::Structure>().expect("a structure");
            let g = |k: &str| p.get::<u64>(k).expect(k);
            (
                p.get::<i32>("pid").expect("pid") as u32,
                PeerStats {
                    frames: g("frames"),
                    drops: g("drops"),
                    held: g("held"),
                },
            )
        })
        .collect();
    (peers, s.get::<u64>("frames").expect("frames"))
}

/// Patience for a state of the sink the tests wait for.
const STATE: Duration = Duration::from_secs(20);

/// With `slow-consumer=drop`, a consumer stopped with SIGSTOP costs the
/// other two nothing: once it misses frames (its share of slots held), the
/// other two get every frame the sink sends, exactly, over the next 100
/// frames, and it gets none. It stays connected, and once continued it
/// resumes, with the frames it missed counted.
#[test]
fn drop_policy_a_stopped_consumer_does_not_slow_the_others() {
    init();
    let _serial = serial();
    let (pipeline, sink, kids, pids) =
        three_consumers("fan-drop", "slow-consumer=drop timeout=300");

    kids.signal(pids[2], libc::SIGSTOP);
    // It takes frames until it holds its share of the slots, then misses them.
    wait_until("the stopped consumer misses frames", STATE, || {
        peers(&sink).get(&pids[2]).is_some_and(|s| s.drops > 0)
    });
    let (p0, f0) = snapshot(&sink);
    wait_until("100 more frames", STATE, || {
        stat(&sink, "frames") >= f0 + 100
    });
    let (p1, f1) = snapshot(&sink);
    let sent = f1 - f0;
    for pid in &pids[..2] {
        let (a, b) = (p0[pid], p1[pid]);
        assert_eq!(b.frames - a.frames, sent, "consumer {pid}: {a:?} -> {b:?}");
        assert_eq!(b.drops, a.drops, "consumer {pid} missed frames");
    }
    let (a, stopped) = (p0[&pids[2]], p1[&pids[2]]);
    assert_eq!(stopped.frames, a.frames, "the stopped consumer took frames");
    assert_eq!(
        stopped.drops - a.drops,
        sent,
        "each frame missed is counted"
    );
    assert!(
        stat(&sink, "drops") >= stopped.drops,
        "the sink's total counts them"
    );
    assert_eq!(stat(&sink, "consumers"), 3, "nobody was disconnected");

    kids.signal(pids[2], libc::SIGCONT);
    wait_until("the stopped consumer resumes", STATE, || {
        peers(&sink)
            .get(&pids[2])
            .is_some_and(|s| s.frames >= stopped.frames + 20)
    });
    assert_eq!(stat(&sink, "disconnects"), 0);
    assert_eq!(stat(&sink, "leaked-slots"), 0);
    pipeline.set_state(gst::State::Null).expect("null");
}

/// With `slow-consumer=disconnect`, a stopped consumer is not dropped when it
/// starts missing frames but once it has missed them for `timeout`;
/// meanwhile and afterwards the others get every frame the sink sends, and
/// the slots it held are back (none held by nobody).
#[test]
fn disconnect_policy_drops_a_stopped_consumer_after_the_timeout() {
    init();
    let _serial = serial();
    let (pipeline, sink, kids, pids) =
        three_consumers("fan-disconnect", "slow-consumer=disconnect timeout=400");

    let (before, sent_before) = snapshot(&sink);
    kids.signal(pids[2], libc::SIGSTOP);
    // Missing frames, and still connected: not dropped at the first miss.
    let mut missing_yet_connected = false;
    wait_until("the stopped consumer is dropped", STATE, || {
        let (p, _) = snapshot(&sink);
        missing_yet_connected |= p.get(&pids[2]).is_some_and(|s| s.drops > 0);
        !p.contains_key(&pids[2])
    });
    assert!(
        missing_yet_connected,
        "dropped before it was seen missing frames"
    );
    assert_eq!(stat(&sink, "disconnects"), 1);
    let (_, at_drop) = snapshot(&sink);
    wait_until("50 more frames", STATE, || {
        stat(&sink, "frames") >= at_drop + 50
    });
    let (after, sent_after) = snapshot(&sink);
    let sent = sent_after - sent_before;
    for pid in &pids[..2] {
        let n = after[pid].frames - before[pid].frames;
        assert_eq!(n, sent, "consumer {pid} got {n} of {sent} frames");
    }
    assert_eq!(stat(&sink, "consumers"), 2);
    assert!(
        stat(&sink, "drops") > 0,
        "the gone consumer's drops stay counted"
    );
    assert_eq!(stat(&sink, "leaked-slots"), 0);
    let held: u64 = after.values().map(|s| s.held).sum();
    assert!(
        stat(&sink, "slots-in-flight") <= held,
        "slots in flight that no live consumer holds"
    );
    pipeline.set_state(gst::State::Null).expect("null");
}

/// With `slow-consumer=block`, a stopped consumer holds up the pipeline:
/// until the sink drops it (after `timeout`), no other consumer gets frames
/// it did not get, and it misses none; then it is dropped and the others go
/// on. Checked at every reading of the stats, counting from the SIGSTOP
/// (the consumers joined at different times): the others are never more
/// than 2 frames ahead of it (a reading may fall in the middle of a frame's
/// sending, at the start and at the end: 1 each).
#[test]
fn block_policy_waits_for_a_stopped_consumer_until_the_timeout() {
    init();
    let _serial = serial();
    let (pipeline, sink, kids, pids) =
        three_consumers("fan-block", "slow-consumer=block timeout=2000");

    let (base, _) = snapshot(&sink);
    kids.signal(pids[2], libc::SIGSTOP);
    let mut readings = 0u32;
    let mut last = 0u64;
    wait_until("the stopped consumer is dropped", STATE, || {
        let (p, _) = snapshot(&sink);
        let Some(stopped) = p.get(&pids[2]) else {
            return true;
        };
        readings += 1;
        last = p[&pids[0]].frames.max(p[&pids[1]].frames);
        assert_eq!(stopped.drops, 0, "a frame was dropped for it");
        let its = stopped.frames - base[&pids[2]].frames;
        for pid in &pids[..2] {
            let n = p[pid].frames - base[pid].frames;
            assert!(
                n <= its + 2,
                "consumer {pid} got {n} frames since the stop, the stopped one {its}"
            );
        }
        false
    });
    assert!(readings > 0);
    assert_eq!(stat(&sink, "disconnects"), 1);
    wait_until("the others go on", STATE, || {
        let p = peers(&sink);
        pids[..2].iter().all(|pid| p[pid].frames >= last + 20)
    });
    assert_eq!(stat(&sink, "consumers"), 2);
    assert_eq!(stat(&sink, "leaked-slots"), 0);
    pipeline.set_state(gst::State::Null).expect("null");
}

/// SIGKILLs child `pid`, reaps it and checks it died of that signal.
fn kill_checked(kids: &mut Children, pid: u32) {
    use std::os::unix::process::ExitStatusExt as _;
    let i = kids
        .0
        .iter()
        .position(|c| c.id() == pid)
        .expect("a child of ours");
    let mut c = kids.0.remove(i);
    c.kill().expect("SIGKILL");
    let status = c.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

/// Starts `gst-launch-1.0 <args>` (a sink) as a child in its own process
/// group; returns its pid.
fn start_sink(kids: &mut Children, args: &str) -> u32 {
    let c = gst_launch(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("sink gst-launch");
    let pid = c.id();
    kids.0.push(c);
    pid
}

/// `shmringsrc socket-path=<path> <props> ! fakesink name=out` and the
/// count of buffers that reached the fakesink.
fn counting_src(path: &std::path::Path, props: &str) -> (gst::Pipeline, Arc<AtomicU64>) {
    let src = pipeline(&format!(
        "shmringsrc name=src socket-path={} {props} ! fakesink name=out sync=false",
        path.display()
    ));
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    src.by_name("out")
        .expect("out")
        .static_pad("sink")
        .expect("pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            c.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    (src, count)
}

/// A sink process SIGKILLed (checked to have died of it) and restarted 10
/// times under a `reconnect=true` src: the src pipeline stays PLAYING
/// without an error, and frames arrive after every restart.
#[test]
fn reconnecting_src_survives_ten_sink_restarts() {
    init();
    let _serial = serial();
    let path = sock("fan-restart");
    let sink_cmd = format!("{SOURCE} ! shmringsink socket-path={}", path.display());
    let mut kids = Children::default();
    let mut sink_pid = start_sink(&mut kids, &sink_cmd);
    wait_until("the sink listens", Duration::from_secs(10), || {
        path.exists()
    });

    let (src, count) = counting_src(&path, "reconnect=true");
    src.set_state(gst::State::Playing).expect("playing");
    let bus = src.bus().expect("bus");
    for restart in 0..=10 {
        let n = count.load(Ordering::Relaxed);
        wait_until("frames after a restart", Duration::from_secs(10), || {
            count.load(Ordering::Relaxed) >= n + 10
        });
        assert_eq!(
            src.current_state(),
            gst::State::Playing,
            "restart {restart}"
        );
        if let Some(m) = bus.pop_filtered(&[gst::MessageType::Error]) {
            panic!("restart {restart}: {m:?}");
        }
        if restart < 10 {
            kill_checked(&mut kids, sink_pid);
            sink_pid = start_sink(&mut kids, &sink_cmd);
        }
    }
    let stats = src
        .by_name("src")
        .expect("src")
        .property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("reconnects"), Ok(10), "{stats}");
    src.set_state(gst::State::Null).expect("null");
}

/// A sink process SIGKILLed: the src's error says the sink died; one that
/// stops (SIGINT: gst-launch sets it to NULL and exits) went away. The src
/// tells the two apart by whether the sink marked its rings closed.
#[test]
fn src_tells_a_killed_sink_from_one_that_stopped() {
    init();
    let _serial = serial();
    for kill in [true, false] {
        let path = sock(if kill { "fan-killed" } else { "fan-stopped" });
        let mut kids = Children::default();
        let pid = start_sink(
            &mut kids,
            &format!("-e {SOURCE} ! shmringsink socket-path={}", path.display()),
        );
        wait_until("the sink listens", Duration::from_secs(10), || {
            path.exists()
        });
        let (src, count) = counting_src(&path, "");
        src.set_state(gst::State::Playing).expect("playing");
        wait_until("frames", Duration::from_secs(10), || {
            count.load(Ordering::Relaxed) >= 10
        });
        if kill {
            kill_checked(&mut kids, pid);
        } else {
            // SAFETY: a signal to our own child process.
            assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
        }
        let bus = src.bus().expect("bus");
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            )
            .expect("an error or EOS on the bus");
        match (kill, msg.view()) {
            (true, gst::MessageView::Error(e)) => {
                let text = e.error().to_string();
                assert!(text.contains("died"), "{text}");
            }
            // `-e`: the stopping sink sends EOS first; an error after it
            // would be the sink going away.
            (false, gst::MessageView::Eos(_)) => {}
            (false, gst::MessageView::Error(e)) => {
                let text = e.error().to_string();
                assert!(text.contains("went away"), "{text}");
            }
            (_, other) => panic!("kill={kill}: {other:?}"),
        }
        src.set_state(gst::State::Null).expect("null");
    }
}

/// A consumer that joins a stream of delta frames gets, after the sticky
/// events, the next keyframe first; the sink asks upstream for one and
/// counts the delta frames it skipped for that consumer.
#[test]
fn a_joining_consumer_starts_at_a_keyframe() {
    init();
    let path = sock("fan-key");
    let p = pipeline(&format!(
        "appsrc name=src format=time caps=application/x-test ! shmringsink name=sink socket-path={} slot-size=4096 wait-for-connection=false sync=false",
        path.display()
    ));
    let appsrc = p
        .by_name("src")
        .expect("src")
        .downcast::<gst_app::AppSrc>()
        .expect("appsrc");
    let asked = Arc::new(AtomicU64::new(0));
    let a = asked.clone();
    appsrc.static_pad("src").expect("pad").add_probe(
        gst::PadProbeType::EVENT_UPSTREAM,
        move |_, info| {
            if let Some(ev) = info.event() {
                if gst_video::UpstreamForceKeyUnitEvent::parse(ev).is_ok() {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
    p.set_state(gst::State::Playing).expect("playing");
    let push = |i: u64, key: bool| {
        let mut b = gst::Buffer::from_slice(vec![i as u8; 16]);
        let m = b.get_mut().expect("writable");
        m.set_pts(gst::ClockTime::from_mseconds(i * 10));
        if !key {
            m.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        appsrc.push_buffer(b).expect("push");
    };
    // Before anyone connects: dropped.
    for i in 0..3 {
        push(i, i == 0);
    }
    let sink = p.by_name("sink").expect("sink");
    wait_until("the first buffers", Duration::from_secs(5), || {
        stat(&sink, "dropped") == 3
    });
    let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect");
    wait_until("the consumer is served", Duration::from_secs(5), || {
        stat(&sink, "consumers") == 1
    });
    for (i, key) in [(3, false), (4, false), (5, true), (6, false)] {
        push(i, key);
    }
    let mut kinds = Vec::new();
    let mut first = None;
    while kinds.len() < 5 {
        match rx.recv(T).expect("recv") {
            Received::Frame(f) => {
                first.get_or_insert(f.missed());
                kinds.push(format!("frame {}", f.bytes()[0]));
            }
            Received::Caps(_) => kinds.push("caps".into()),
            Received::StreamStart(_) => kinds.push("stream-start".into()),
            Received::Segment(_) => kinds.push("segment".into()),
            Received::Tags(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        kinds,
        ["stream-start", "caps", "segment", "frame 5", "frame 6"],
        "sticky events, then from the keyframe"
    );
    assert_eq!(peers(&sink).values().map(|s| s.drops).sum::<u64>(), 2);
    assert_eq!(
        first,
        Some(2),
        "the keyframe tells the consumer it missed two"
    );
    assert!(
        asked.load(Ordering::Relaxed) >= 1,
        "no keyframe asked of upstream"
    );
    p.set_state(gst::State::Null).expect("null");
}

/// Next to an honest consumer that holds each frame 50 ms and checks
/// its bytes do not change meanwhile, a hostile one returns every slot
/// twice, slots it never got and garbage. Its returns are ignored and
/// counted; it is not dropped for them; the honest consumer's frames are
/// never rewritten under it.
///
/// Run twice: with zero-copy frames (the sink holds a buffer of its pool per
/// consumer) and with copied frames (only the arena's count of holders keeps
/// the slot from reuse).
#[test]
fn forged_returns_are_ignored_and_never_free_another_consumers_slot() {
    init();
    let _serial = serial();
    forged_returns_beside_an_honest_consumer(false);
    forged_returns_beside_an_honest_consumer(true);
}

fn forged_returns_beside_an_honest_consumer(copied: bool) {
    let path = sock(if copied {
        "fan-hostile-copy"
    } else {
        "fan-hostile"
    });
    const HOLD: Duration = Duration::from_millis(50);
    let run = Duration::from_millis(1500);
    let (pipeline, sink, feeder) = if copied {
        // appsrc buffers are not the sink's: each is copied into a free slot.
        let p = pipeline(&format!(
            "appsrc name=feed is-live=true format=time caps=video/x-raw,format=GRAY8,width=64,height=48,framerate=100/1 ! shmringsink name=sink sync=false slots=8 socket-path={}",
            path.display()
        ));
        p.set_state(gst::State::Playing).expect("playing");
        let feed = p
            .by_name("feed")
            .expect("feed")
            .downcast::<gst_app::AppSrc>()
            .expect("appsrc");
        let feeder = std::thread::spawn(move || {
            let end = Instant::now() + run + Duration::from_millis(500);
            let mut i = 0u64;
            while Instant::now() < end {
                let data: Vec<u8> = (0..64 * 48).map(|k| (i as usize * 7 + k) as u8).collect();
                let mut b = gst::Buffer::from_slice(data);
                b.get_mut()
                    .expect("writable")
                    .set_pts(gst::ClockTime::from_mseconds(i * 5));
                if feed.push_buffer(b).is_err() {
                    break;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let sink = p.by_name("sink").expect("sink");
        (p, sink, Some(feeder))
    } else {
        let (p, sink) = sink_pipeline(&path, "slots=8");
        (p, sink, None)
    };
    let honest = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect");
            let sum = |b: &[u8]| {
                b.iter()
                    .fold(0u64, |h, &x| h.wrapping_mul(31) ^ u64::from(x))
            };
            let mut held = std::collections::VecDeque::new();
            let (mut frames, mut changed) = (0, 0);
            let end = Instant::now() + run;
            while Instant::now() < end {
                if let Ok(Received::Frame(f)) = rx.recv(Some(Duration::from_millis(5))) {
                    frames += 1;
                    let s = sum(f.bytes());
                    held.push_back((Instant::now(), f, s));
                }
                // Each frame is held 50 ms: several frames' time, while the
                // sink goes on with the other slots.
                while held.front().is_some_and(|(t, _, _)| t.elapsed() >= HOLD) {
                    if let Some((_, f, s)) = held.pop_front() {
                        changed += u64::from(sum(f.bytes()) != s);
                    }
                }
            }
            // The receiver goes back too: alive until the stats are checked.
            (frames, changed, rx)
        })
    };
    let hostile = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect");
            let mut rng = Lcg(7);
            let end = Instant::now() + run;
            let mut forged = 0u64;
            while Instant::now() < end {
                if let Ok(Received::Frame(f)) = rx.recv(Some(Duration::from_millis(100))) {
                    let slot = f.slot();
                    drop(f); // returned once, honestly
                    for s in [slot, slot, u32::MAX, rng.below(80) as u32, slot ^ 1] {
                        if rx.return_raw(s).is_ok() {
                            forged += 1;
                        }
                    }
                }
            }
            (forged, rx)
        })
    };
    let (frames, changed, _honest_rx) = honest.join().expect("honest");
    let (forged, _hostile_rx) = hostile.join().expect("hostile");
    assert_eq!(
        changed, 0,
        "a frame changed while the honest consumer held it"
    );
    assert!(frames > 20, "honest consumer got {frames} frames");
    assert!(forged > 100, "{forged} forged returns");
    // Some forged returns name a slot the hostile consumer did hold (the
    // frame after, say): those are not bad. Most are.
    assert!(
        stat(&sink, "bad-returns") > forged / 2,
        "{}",
        stat(&sink, "bad-returns")
    );
    assert_eq!(stat(&sink, "disconnects"), 0, "ignored, not disconnected");
    assert_eq!(stat(&sink, "leaked-slots"), 0);
    let (zero_copy, copied_n) = (stat(&sink, "zero-copy"), stat(&sink, "copied"));
    if copied {
        assert!(copied_n > 50 && zero_copy == 0, "{zero_copy} {copied_n}");
    } else {
        assert!(zero_copy > 50, "{zero_copy} {copied_n}");
    }
    pipeline.set_state(gst::State::Null).expect("null");
    if let Some(f) = feeder {
        f.join().expect("feeder");
    }
}

/// `max-consumers`: a consumer beyond the limit is refused with the reason;
/// once one leaves, the next is served.
#[test]
fn consumers_beyond_max_consumers_are_refused_with_the_reason() {
    init();
    let path = sock("fan-max");
    let (pipeline, sink) = sink_pipeline(&path, "max-consumers=2");
    let cfg = FrameConfig::consumer();
    let first = frames::connect(&path, &cfg).expect("first");
    let second = frames::connect(&path, &cfg).expect("second");
    match frames::connect(&path, &cfg) {
        Err(shmring::Error::PeerRefused(reason)) => {
            assert!(reason.contains("at most 2"), "{reason}")
        }
        other => panic!("third consumer: {other:?}"),
    }
    assert_eq!(stat(&sink, "consumers"), 2);
    drop(first);
    wait_until("the first consumer is gone", Duration::from_secs(5), || {
        stat(&sink, "consumers") == 1
    });
    let _third = frames::connect(&path, &cfg).expect("a place is free again");
    drop(second);
    pipeline.set_state(gst::State::Null).expect("null");
}
