//! Hostile peers of the elements, in their own processes and written against
//! the wire protocol (raw sockets, raw hello bytes, raw writes to the shared
//! ring headers and to the signal fds): they cannot stall the stream to the
//! honest consumers, lock them out, or keep their place once gone, and the
//! elements stop cleanly on request afterwards.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use shmring::channel::ChannelFds;
use shmring::frames::Descriptor;
use shmring::handshake::{self, Listener};
use shmring::{Config, SignalKind};

const ROLE: &str = "SHMRING_GST_HOSTILE_ROLE";
const DESCRIPTOR_TYPE: &str = "shmring-frame-descriptor-v2";
const RETURN_TYPE: &str = "shmring-frame-return-v2";

// ---- The hostile side's tools: raw sockets, raw messages, raw memory. ----

/// A socket connected to `path` (one attempt), before any handshake.
fn raw_connect(path: &Path) -> OwnedFd {
    handshake::connect_socket(path, Duration::ZERO).expect("connect")
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

/// The hello of a frame consumer, byte by byte: magic, version, role 2
/// (consumer), descriptor size and alignment, signal kind 3 (socket), name.
fn raw_hello() -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"SHMRHELO");
    h.extend_from_slice(&handshake::PROTOCOL_VERSION.to_le_bytes());
    h.extend_from_slice(&2u32.to_le_bytes());
    h.extend_from_slice(&(std::mem::size_of::<Descriptor>() as u32).to_le_bytes());
    h.extend_from_slice(&(std::mem::align_of::<Descriptor>() as u32).to_le_bytes());
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&(DESCRIPTOR_TYPE.len() as u32).to_le_bytes());
    let mut name = [0u8; handshake::NAME_MAX];
    name[..DESCRIPTOR_TYPE.len()].copy_from_slice(DESCRIPTOR_TYPE.as_bytes());
    h.extend_from_slice(&name);
    h
}

/// A raw frame consumer's handshake: returns the link, the welcome's fds
/// (descriptor ring, its data and space ends) and the frames welcome's
/// (arena, return ring, its data and space ends, message socket).
fn raw_consumer(path: &Path) -> (OwnedFd, Vec<OwnedFd>, Vec<OwnedFd>) {
    let link = raw_connect(path);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (_, welcome) =
        handshake::exchange_hello(link.as_fd(), &raw_hello(), deadline).expect("welcome");
    let mut buf = [0u8; 512];
    let (_, frames) =
        handshake::recv_with_fds(link.as_fd(), &mut buf, handshake::MAX_FDS, deadline)
            .expect("frames welcome");
    assert_eq!((welcome.len(), frames.len()), (3, 5));
    (link, welcome, frames)
}

/// Maps a ring segment read-write, as a hostile peer does.
fn map_ring(fd: &OwnedFd) -> *mut u8 {
    shmring::segment::map_writable_forever(fd.as_fd())
        .expect("map the segment")
        .0
}

/// The 8-byte word at `offset` of a mapped ring (136: the consumer's sleep
/// sequence, 264: the producer's; see `shmring::ring`).
fn word(ring: *mut u8, offset: usize) -> &'static AtomicU64 {
    // SAFETY: offsets 136 and 264 of a ring mapping are aligned u64 words
    // inside its header lines; the mapping lives as long as the process.
    unsafe { &*(ring.add(offset) as *const AtomicU64) }
}

/// Fill what we can send into (eventfd-style counter values too), then
/// clear `O_NONBLOCK` behind the peer's back, on every fd.
fn abuse_signal_fds(fds: &[&OwnedFd]) {
    let max = 0xffff_ffff_ffff_fffe_u64.to_ne_bytes();
    for fd in fds {
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

// ---- Children. ----

/// A child process, SIGKILLed and reaped when dropped (also when a test
/// fails half-way).
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Kid {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Kid {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn_role(role: &str, path: &Path) -> Kid {
    Kid(Command::new(std::env::current_exe().expect("exe"))
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("SOCK", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child"))
}

/// Waits for a child's line containing `what` (the harness prints its own
/// text before it on the same line).
fn wait_line(child: &mut Child, what: &str) {
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    loop {
        let mut l = String::new();
        assert!(
            out.read_line(&mut l).expect("read") > 0,
            "child ended before {what}"
        );
        if l.contains(what) {
            return;
        }
    }
}

fn say(what: &str) {
    println!("{what}");
    std::io::stdout().flush().expect("flush");
}

fn park() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(600));
    }
}

/// Entry point of the re-executed children; does nothing in a normal run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = std::env::var("SOCK").expect("SOCK");
    let path = Path::new(&path);
    match role.as_str() {
        "slowloris" => {
            let _silent: Vec<OwnedFd> = (0..200).map(|_| raw_connect(path)).collect();
            say("open=200");
            park();
        }
        "stage-connect" => {
            let _link = raw_connect(path);
            say("stage");
            park();
        }
        "stage-hello" => {
            let link = raw_connect(path);
            assert!(raw_send(&link, &raw_hello()) > 0);
            say("stage");
            park();
        }
        "stage-welcome" => {
            let link = raw_connect(path);
            let deadline = Instant::now() + Duration::from_secs(10);
            let _w =
                handshake::exchange_hello(link.as_fd(), &raw_hello(), deadline).expect("welcome");
            say("stage");
            park();
        }
        "stage-served" => {
            let _kept = raw_consumer(path);
            say("stage");
            park();
        }
        "zombie-byte" => {
            // Served, then one byte on the link, and nothing read ever.
            let (link, _w, _f) = raw_consumer(path);
            assert_eq!(raw_send(&link, b"x"), 1);
            say("sent");
            park();
        }
        "zombie-unread" => {
            // Served, then nothing read ever (descriptors and wake-ups pile
            // up); the test SIGKILLs it.
            let _kept = raw_consumer(path);
            say("served");
            park();
        }
        "abuse-consumer" => {
            let (_link, w, f) = raw_consumer(path);
            let desc = map_ring(&w[0]);
            let ret = map_ring(&f[1]);
            abuse_signal_fds(&[&w[1], &w[2], &f[2], &f[3]]);
            say("abusing");
            // Keep announcing sleeps: as the descriptor ring's consumer
            // (the sink wakes us on every commit) and as the return ring's
            // producer (the sink wakes us on every return it takes).
            let (a, b) = (word(desc, 136), word(ret, 264));
            let mut seq = 1u64;
            loop {
                a.store(seq, Ordering::SeqCst);
                b.store(seq, Ordering::SeqCst);
                seq += 2;
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

// ---- Tests. ----

/// Sets the pipeline to NULL on another thread: it must get there (a hang
/// guard of 30 s, not a speed requirement).
fn stops_cleanly(pipeline: gst::Pipeline) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = pipeline.set_state(gst::State::Null);
        let _ = tx.send(r.is_ok());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the element did not stop"),
        "set_state(Null) failed"
    );
}

/// The longest time, over `window`, during which `pid` received no frame.
fn longest_gap(sink: &gst::Element, pid: u32, window: Duration) -> Duration {
    let end = Instant::now() + window;
    let mut last = peers(sink).get(&pid).map_or(0, |p| p.frames);
    let mut since = Instant::now();
    let mut worst = Duration::ZERO;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
        let n = peers(sink).get(&pid).map_or(0, |p| p.frames);
        if n != last {
            last = n;
            since = Instant::now();
        }
        worst = worst.max(since.elapsed());
    }
    worst
}

/// 200 connections that never say hello are open when an honest consumer
/// connects: it is served and streams; the connections beyond the pending
/// bound are dropped and counted (`refused`). The sink then stops cleanly.
#[test]
fn slowloris_200_connections_do_not_keep_an_honest_consumer_out() {
    init();
    let path = sock("slowloris");
    let (pipeline, sink) = sink_pipeline(&path, "");
    let mut kids = Children::default();
    let mut attacker = spawn_role("slowloris", &path);
    wait_line(&mut attacker, "open=200");
    let pid = kids.spawn_src(&path);
    wait_streaming(&sink, &[pid]);
    wait_until("refusals counted", Duration::from_secs(10), || {
        stat(&sink, "refused") >= 200 - handshake::DEFAULT_MAX_PENDING as u64
    });
    let _ = attacker.kill();
    let _ = attacker.wait();
    stops_cleanly(pipeline);
}

/// The same before the sink has caps (an `appsrc` that has pushed nothing):
/// the honest consumer's hello is taken at once, it waits for the caps
/// without holding anything up, and streams once they come.
#[test]
fn slowloris_before_caps_does_not_keep_an_honest_consumer_out() {
    init();
    let path = sock("slowloris-nocaps");
    let p = pipeline(&format!(
        "appsrc name=in is-live=true format=time caps=video/x-raw,format=GRAY8,width=64,height=48,framerate=100/1 ! shmringsink name=sink socket-path={}",
        path.display()
    ));
    p.set_state(gst::State::Playing).expect("playing");
    let sink = p.by_name("sink").expect("sink");
    let appsrc = p
        .by_name("in")
        .expect("appsrc")
        .downcast::<gst_app::AppSrc>()
        .expect("appsrc type");
    let mut kids = Children::default();
    let mut attacker = spawn_role("slowloris", &path);
    wait_line(&mut attacker, "open=200");
    let pid = kids.spawn_src(&path);
    // Frames only now: the consumer was waiting for the caps.
    let pusher = std::thread::spawn(move || {
        for i in 0..300u64 {
            let mut b = gst::Buffer::with_size(64 * 48).expect("buffer");
            b.get_mut()
                .expect("fresh")
                .set_pts(gst::ClockTime::from_mseconds(10 * i));
            if appsrc.push_buffer(b).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    wait_streaming(&sink, &[pid]);
    let _ = attacker.kill();
    let _ = attacker.wait();
    stops_cleanly(p);
    let _ = pusher.join();
}

/// A consumer SIGKILLed at every stage of its handshake (connected; hello
/// sent; welcome read; fully served), with `max-consumers=2` and an honest
/// consumer streaming meanwhile: each time, the sink lets it go (a served one
/// counted as a disconnect, its slots back), the honest one never stops
/// (no gap of a second), and the place is free for the next one.
#[test]
fn consumer_killed_at_every_handshake_stage_leaves_nothing_behind() {
    init();
    let path = sock("stages");
    let (pipeline, sink) = sink_pipeline(&path, "max-consumers=2");
    let mut kids = Children::default();
    let honest = kids.spawn_src(&path);
    wait_streaming(&sink, &[honest]);
    for stage in [
        "stage-connect",
        "stage-hello",
        "stage-welcome",
        "stage-served",
    ] {
        let disconnects = stat(&sink, "disconnects");
        let mut victim = spawn_role(stage, &path);
        wait_line(&mut victim, "stage");
        let gap = longest_gap(&sink, honest, Duration::from_millis(300));
        assert!(gap < Duration::from_secs(1), "{stage}: longest gap {gap:?}");
        drop(victim);
        if stage == "stage-served" {
            wait_until("the served victim dropped", Duration::from_secs(10), || {
                stat(&sink, "disconnects") == disconnects + 1
            });
        }
        wait_until("one consumer left", Duration::from_secs(10), || {
            stat(&sink, "consumers") == 1
        });
        assert_eq!(stat(&sink, "leaked-slots"), 0, "{stage}");
        // The place is free: a new consumer is served, then leaves.
        let next = kids.spawn_src(&path);
        wait_streaming(&sink, &[honest, next]);
        kids.kill(next);
        wait_until("the next one gone", Duration::from_secs(10), || {
            stat(&sink, "consumers") == 1
        });
    }
    stops_cleanly(pipeline);
}

/// With `max-consumers=1`, a consumer that sends a byte on its link after the
/// handshake (and reads nothing) is dropped although alive, and its place
/// goes to an honest consumer.
#[test]
fn zombie_sending_on_its_link_is_dropped_and_its_place_freed() {
    init();
    let path = sock("zombie-byte");
    let (pipeline, sink) = sink_pipeline(&path, "max-consumers=1");
    let mut zombie = spawn_role("zombie-byte", &path);
    wait_line(&mut zombie, "sent");
    wait_until("the zombie dropped", Duration::from_secs(10), || {
        stat(&sink, "disconnects") == 1
    });
    let mut kids = Children::default();
    let pid = kids.spawn_src(&path);
    wait_streaming(&sink, &[pid]);
    assert_eq!(stat(&sink, "consumers"), 1);
    assert_eq!(stat(&sink, "leaked-slots"), 0);
    let _ = zombie.kill();
    let _ = zombie.wait();
    stops_cleanly(pipeline);
}

/// With `max-consumers=2`, a consumer that leaves every descriptor and
/// wake-up unread is SIGKILLed: it is dropped (whatever it left unread), its
/// slots come back, and two honest consumers get the places.
#[test]
fn zombie_killed_with_bytes_unread_is_dropped_and_its_place_freed() {
    init();
    let path = sock("zombie-unread");
    let (pipeline, sink) = sink_pipeline(&path, "max-consumers=2");
    let mut kids = Children::default();
    let first = kids.spawn_src(&path);
    wait_streaming(&sink, &[first]);
    let mut zombie = spawn_role("zombie-unread", &path);
    wait_line(&mut zombie, "served");
    wait_until("the zombie counted", Duration::from_secs(10), || {
        stat(&sink, "consumers") == 2
    });
    // Let descriptors and wake-ups pile up unread.
    std::thread::sleep(Duration::from_millis(300));
    let _ = zombie.kill();
    let _ = zombie.wait();
    wait_until("the zombie dropped", Duration::from_secs(10), || {
        stat(&sink, "disconnects") == 1 && stat(&sink, "consumers") == 1
    });
    let second = kids.spawn_src(&path);
    wait_streaming(&sink, &[first, second]);
    assert_eq!(stat(&sink, "leaked-slots"), 0);
    stops_cleanly(pipeline);
}

/// A consumer that abuses every signal fd it got (flags, floods, counter
/// values) and keeps announcing sleeps on both rings: the other consumer
/// keeps receiving (no gap of a second), and the sink stops cleanly.
#[test]
fn consumer_abusing_its_signals_does_not_stall_the_sink() {
    init();
    let path = sock("abuse-consumer");
    let (pipeline, sink) = sink_pipeline(&path, "");
    let mut kids = Children::default();
    let honest = kids.spawn_src(&path);
    wait_streaming(&sink, &[honest]);
    let mut attacker = spawn_role("abuse-consumer", &path);
    wait_line(&mut attacker, "abusing");
    let gap = longest_gap(&sink, honest, Duration::from_secs(3));
    assert!(gap < Duration::from_secs(1), "longest gap {gap:?}");
    let _ = attacker.kill();
    let _ = attacker.wait();
    stops_cleanly(pipeline);
}

/// A hostile sink (raw messages; it keeps a copy of every fd it sends) abuses
/// the `shmringsrc`'s signal ends: clears their flags, fills the ends the src
/// sends on, reads (steals) from those it waits on, and keeps announcing
/// sleeps. The src, a `gst-launch-1.0` process, still stops on SIGINT.
#[test]
fn hostile_sink_cannot_block_the_src() {
    init();
    let path = sock("hostile-sink");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let mut src = Kid(gst_launch(&format!(
        "-e shmringsrc socket-path={} ! fakesink sync=false",
        path.display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("gst-launch src"));
    let conn = listener
        .accept(Some(Duration::from_secs(10)))
        .expect("accept");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    handshake::recv_with_fds(conn.fd(), &mut buf, 0, deadline).expect("hello");
    let desc = ChannelFds::create::<Descriptor>(
        &Config::new(256)
            .type_name(DESCRIPTOR_TYPE)
            .signal(SignalKind::Socket),
    )
    .expect("desc ring");
    // Room for every slot and every blob (8 + 64), as the protocol wants.
    let ret = ChannelFds::create::<u32>(
        &Config::new(128)
            .type_name(RETURN_TYPE)
            .signal(SignalKind::Socket),
    )
    .expect("return ring");
    // The message socket: we keep both ends (and abuse the src's below).
    let msgs = {
        // SAFETY: socketpair fills two fds we then own.
        let mut fds = [0i32; 2];
        assert_eq!(
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                    0,
                    fds.as_mut_ptr(),
                )
            },
            0
        );
        // SAFETY: two fresh fds nothing else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    };
    // The arena: a raw memfd, 8 slots of 4096 bytes, sealed as a consumer
    // requires.
    let (slots, slot_size) = (8u32, 4096u64);
    // SAFETY: memfd_create with a NUL-terminated name; ftruncate and fcntl on
    // the fd it returns, which we own.
    let arena = unsafe {
        let fd = libc::memfd_create(
            c"evil-arena".as_ptr(),
            libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC,
        );
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        assert_eq!(
            libc::ftruncate(
                fd.as_raw_fd(),
                (u64::from(slots) * slot_size) as libc::off_t
            ),
            0
        );
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE;
        assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals), 0);
        fd
    };
    // The welcome, field by field.
    let mut w = Vec::new();
    w.extend_from_slice(b"SHMRWLCM");
    w.extend_from_slice(&handshake::PROTOCOL_VERSION.to_le_bytes());
    w.extend_from_slice(&0u32.to_le_bytes());
    w.extend_from_slice(&(desc.capacity as u64).to_le_bytes());
    w.extend_from_slice(&desc.tag.name_hash.to_le_bytes());
    w.extend_from_slice(&desc.tag.size.to_le_bytes());
    w.extend_from_slice(&desc.tag.align.to_le_bytes());
    w.extend_from_slice(&3u32.to_le_bytes());
    w.extend_from_slice(&3u32.to_le_bytes());
    w.extend_from_slice(&[0u8; 128]);
    handshake::send_with_fds(conn.fd(), &w, &desc.fds()).expect("welcome");
    // The frames welcome: magic, version, signal, slots, nfds, slot size,
    // return capacity.
    let mut f = Vec::new();
    f.extend_from_slice(b"SHMRFRAM");
    f.extend_from_slice(&3u32.to_le_bytes());
    f.extend_from_slice(&3u32.to_le_bytes());
    f.extend_from_slice(&slots.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&slot_size.to_le_bytes());
    f.extend_from_slice(&(ret.capacity as u64).to_le_bytes());
    let mut ffds = vec![arena.as_fd()];
    ffds.extend(ret.fds());
    ffds.push(msgs.1.as_fd());
    handshake::send_with_fds(conn.fd(), &f, &ffds).expect("frames welcome");
    // We kept the src's ends (`desc.fds()`, `ret.fds()` are its ends and we
    // still hold them): abuse them.
    let d_ring = map_ring(&desc.segment);
    let r_ring = map_ring(&ret.segment);
    abuse_signal_fds(&[&desc.data[0], &desc.space[0], &ret.data[0], &ret.space[0]]);
    // Its message socket too: clear O_NONBLOCK on its end (shared with us).
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(msgs.1.as_raw_fd(), libc::F_SETFL, 0) };
    // Steal from the ends the src waits on, in blocking reads.
    for fd in [&desc.data[0], &ret.space[0]] {
        let fd = fd.try_clone().expect("dup");
        std::thread::spawn(move || {
            let mut b = [0u8; 64];
            // SAFETY: blocking reads into a live buffer on an fd we own.
            while unsafe { libc::recv(fd.as_raw_fd(), b.as_mut_ptr().cast(), 64, 0) } > 0 {}
        });
    }
    let (a, b) = (word(d_ring, 264), word(r_ring, 136));
    let abuse_until = Instant::now() + Duration::from_secs(2);
    let mut seq = 1u64;
    while Instant::now() < abuse_until {
        a.store(seq, Ordering::SeqCst);
        b.store(seq, Ordering::SeqCst);
        seq += 2;
        std::thread::sleep(Duration::from_micros(50));
    }
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(src.id() as i32, libc::SIGINT) }, 0);
    let guard = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = src.try_wait().expect("wait") {
            assert!(status.code().is_some(), "src died: {status:?}");
            break;
        }
        assert!(Instant::now() < guard, "the src did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(conn);
}

/// Two sinks started at the same instant on one path, 100 times: exactly one
/// starts each time (the other's state change fails with "in use"), and the
/// one that started serves the path.
#[test]
fn two_sinks_racing_on_one_path_exactly_one_starts() {
    init();
    let path = sock("race");
    for round in 0..100 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (barrier, path) = (barrier.clone(), path.clone());
                std::thread::spawn(move || {
                    let p = pipeline(&format!(
                        "{SOURCE} ! shmringsink socket-path={}",
                        path.display()
                    ));
                    barrier.wait();
                    let started = p.set_state(gst::State::Paused).is_ok();
                    (p, started)
                })
            })
            .collect();
        let results: Vec<(gst::Pipeline, bool)> = racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect();
        let started = results.iter().filter(|r| r.1).count();
        assert_eq!(started, 1, "round {round}");
        drop(raw_connect(&path));
        for (p, _) in results {
            p.set_state(gst::State::Null).expect("null");
        }
    }
}
