//! Payloads of any size: blobs (sealed memfds of their own) for frames and
//! strings that do not fit a slot, their budget, the message socket
//! (goodbye reasons, upstream messages), and a hostile producer's blobs.

mod common;

use std::time::{Duration, Instant};

use shmring::frames::{
    self, Blob, Descriptor, FrameConfig, FrameExtras, FrameMeta, Kind, PlaneLayout, Received,
    STORAGE_BLOB,
};
use shmring::handshake::Listener;
use shmring::{Error, Zeroable};

const T: Option<Duration> = Some(Duration::from_secs(10));

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn expect_frame(rx: &mut frames::FrameReceiver) -> frames::FrameRef {
    match rx.recv(T).expect("recv") {
        Received::Frame(f) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn a_frame_bigger_than_a_slot_crosses_as_a_sealed_blob() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    for (i, len) in [4097usize, 1 << 20, 3 << 20].into_iter().enumerate() {
        let data = bytes(len, i as u8);
        let blob = Blob::copy_of(&data).expect("blob");
        let meta = FrameMeta {
            pts: i as u64,
            flags: 7,
            ..FrameMeta::default()
        };
        tx.send_blob(&blob, &meta, &FrameExtras::default())
            .expect("send");
        let f = expect_frame(&mut rx);
        assert!(f.is_immutable(), "a blob is sealed against writes");
        assert_eq!(f.bytes(), &data[..], "blob {i} content");
        assert_eq!(f.meta().pts, i as u64);
        assert_eq!(f.meta().flags, 7);
        assert_eq!(tx.blobs_in_flight(), 1);
        drop(f);
        tx.reclaim(|_| {}).expect("reclaim");
        assert_eq!(tx.blobs_in_flight(), 0, "blob {i} came back");
        assert_eq!(tx.blob_bytes(), 0);
    }
    assert_eq!(tx.bad_returns(), 0);
}

#[test]
fn strings_longer_than_a_slot_cross() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(2, 64)).expect("pair");
    let caps = format!("video/x-vp8,streamheader=<{}>", "ab".repeat(5000));
    tx.send_caps(&caps).expect("caps");
    tx.send_event_string("toc, x=(int)1").expect("event");
    assert!(matches!(rx.recv(T), Ok(Received::Caps(c)) if c == caps));
    assert!(matches!(rx.recv(T), Ok(Received::Event(e)) if e == "toc, x=(int)1"));
}

#[test]
fn the_blob_budget_holds_and_frees() {
    let cfg = FrameConfig::new(4, 4096).blob_budget(3 << 20);
    let (mut tx, mut rx) = frames::pair(&cfg).expect("pair");
    let mb = Blob::copy_of(&bytes(1 << 20, 1)).expect("blob");
    for _ in 0..3 {
        tx.send_blob(&mb, &FrameMeta::default(), &FrameExtras::default())
            .expect("within budget");
    }
    assert!(!tx.blob_fits(1));
    assert!(matches!(
        tx.send_blob(&mb, &FrameMeta::default(), &FrameExtras::default()),
        Err(Error::Full)
    ));
    let too_big = Blob::copy_of(&bytes(4 << 20, 2)).expect("blob");
    assert!(matches!(
        tx.send_blob(&too_big, &FrameMeta::default(), &FrameExtras::default()),
        Err(Error::InvalidArgument(_))
    ));
    let held: Vec<_> = (0..3).map(|_| expect_frame(&mut rx)).collect();
    drop(held);
    tx.reclaim(|_| {}).expect("reclaim");
    assert_eq!(tx.blob_bytes(), 0);
    tx.send_blob(&mb, &FrameMeta::default(), &FrameExtras::default())
        .expect("room again");
}

#[test]
fn layout_and_metas_travel_with_the_frame() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    let layout = PlaneLayout {
        format: 2,
        flags: 0,
        width: 66,
        height: 50,
        n_planes: 3,
        offsets: [0, 4000, 5000, 0],
        strides: [80, 48, -48, 0],
    };
    let mut lease = tx.try_lease().expect("lease");
    lease.as_mut()[..10].copy_from_slice(&[9; 10]);
    let slot = lease.index();
    let extras = FrameExtras {
        layout: Some(layout),
        metas: Some("crop-meta, x=(int)1"),
    };
    tx.send_frame_with(slot, 0, 10, &FrameMeta::default(), &extras)
        .expect("send");
    drop(lease);
    assert!(matches!(rx.recv(T), Ok(Received::Metas(m)) if m == "crop-meta, x=(int)1"));
    let f = expect_frame(&mut rx);
    assert_eq!(f.layout(), Some(&layout));
    assert!(!f.is_immutable(), "an arena slot is not sealed");
}

#[test]
fn upstream_messages_reach_the_producer_from_any_thread() {
    let (mut tx, rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    let up = rx.upstream();
    std::thread::spawn(move || up.send("GstForceKeyUnit, all-headers=(boolean)true"))
        .join()
        .expect("thread")
        .expect("send");
    assert_eq!(
        tx.try_recv_upstream().expect("recv").as_deref(),
        Some("GstForceKeyUnit, all-headers=(boolean)true")
    );
    assert_eq!(tx.try_recv_upstream().expect("recv"), None);
    assert!(rx
        .upstream()
        .send(&"x".repeat(frames::MAX_MESSAGE + 1))
        .is_err());
}

#[test]
fn a_dropped_consumer_learns_why() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    tx.say_goodbye("too slow: took nothing for 5 s");
    drop(tx);
    match rx.recv(T) {
        Err(Error::Dropped(why)) => assert_eq!(why, "too slow: took nothing for 5 s"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_blob_descriptors_are_errors() {
    // A blob descriptor whose fd never came.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    let mut d = Descriptor::zeroed();
    d.kind = Kind::Frame as u32;
    d.storage = STORAGE_BLOB;
    d.size = 100;
    tx.send_raw(d).expect("raw");
    let e = rx.recv(T).expect_err("accepted a blob without its fd");
    assert!(matches!(e, Error::BadDescriptor(_)), "{e}");

    // An unknown storage kind.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    d.storage = 7;
    tx.send_raw(d).expect("raw");
    assert!(matches!(rx.recv(T), Err(Error::BadDescriptor(_))));

    // A blob announced with another number than the one due.
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
    d.storage = STORAGE_BLOB;
    d.slot = 5;
    tx.send_raw(d).expect("raw");
    assert!(matches!(rx.recv(T), Err(Error::BadDescriptor(_))));
}

// ---------------------------------------------------------------- processes

/// Entry point of the re-executed child; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let path = std::env::var("SOCK").unwrap_or_default();
    if role == "big-receiver" {
        let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect");
        let mut sum = 0u64;
        let mut n = 0;
        loop {
            match rx.recv(T) {
                Ok(Received::Frame(f)) => {
                    sum = f
                        .bytes()
                        .iter()
                        .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
                    n += 1;
                }
                Ok(Received::Eos) => break,
                other => panic!("{other:?}"),
            }
        }
        println!("frames={n} sum={sum}");
    }
}

#[test]
fn blobs_up_to_256_mib_cross_to_another_process() {
    let path = common::sock_path("blobs");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let child = common::spawn_child(
        "child_entry",
        "big-receiver",
        &[("SOCK", path.display().to_string())],
    );
    let conn = listener.accept(T).expect("accept");
    let mut tx = frames::serve(conn, &FrameConfig::new(4, 4096)).expect("serve");
    let mut sum = 0u64;
    let sizes = [1usize, 4096, 4097, 5 << 20, 256 << 20];
    for (i, &len) in sizes.iter().enumerate() {
        let data = bytes(len, i as u8);
        sum = data
            .iter()
            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
        let meta = FrameMeta::default();
        if len <= tx.slot_size() {
            let mut lease = tx.try_lease().expect("lease");
            lease.as_mut()[..len].copy_from_slice(&data);
            tx.send_lease(lease, len, &meta).expect("send");
        } else {
            let blob = Blob::copy_of(&data).expect("blob");
            drop(data);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                tx.reclaim(|_| {}).expect("reclaim");
                match tx.send_blob(&blob, &meta, &FrameExtras::default()) {
                    Err(Error::Full) if Instant::now() < deadline => {
                        let _ = tx.wait_returns(Some(Duration::from_millis(50)));
                    }
                    r => break r.expect("blob"),
                }
            }
        }
    }
    tx.send_eos().expect("eos");
    let out = common::finish(child);
    assert!(
        out.contains(&format!("frames={} sum={sum}", sizes.len())),
        "{out}"
    );
}

#[test]
fn serve_reports_why_the_consumer_refused_the_stream() {
    let path = common::sock_path("refuse");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let p = path.clone();
    // The consumer accepts arenas of 1 MiB at most; the producer offers 4.
    let consumer = std::thread::spawn(move || {
        frames::connect(&p, &FrameConfig::consumer().max_arena(1 << 20)).map(|_| ())
    });
    let conn = listener.accept(T).expect("accept");
    let served = frames::serve(conn, &FrameConfig::new(4, 1 << 20));
    match served {
        Err(Error::Rejected(why)) => assert!(why.contains("limit"), "{why}"),
        other => panic!("the producer did not learn why: {other:?}"),
    }
    assert!(consumer.join().expect("consumer").is_err());
}

#[test]
fn serve_returns_once_the_consumer_took_the_stream() {
    let path = common::sock_path("ready");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let p = path.clone();
    let consumer = std::thread::spawn(move || {
        let rx = frames::connect(&p, &FrameConfig::consumer()).expect("connect");
        rx.upstream().send("early").expect("upstream");
        rx
    });
    let conn = listener.accept(T).expect("accept");
    let mut tx = frames::serve(conn, &FrameConfig::new(4, 4096)).expect("serve");
    let rx = consumer.join().expect("consumer");
    // An upstream message sent right after connecting is not lost to the
    // wait for the consumer's verdict.
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        match tx.try_recv_upstream().expect("upstream") {
            Some(s) => break s,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            None => panic!("the upstream message was lost"),
        }
    };
    assert_eq!(got, "early");
    drop(rx);
}

#[test]
fn a_lease_that_could_not_be_sent_comes_back_with_its_bytes() {
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(8, 4096).descriptors(2)).expect("pair");
    for i in 0..2u8 {
        let mut l = tx.try_lease().expect("lease");
        l.as_mut()[0] = i;
        tx.send_lease(l, 1, &FrameMeta::default()).expect("room");
    }
    let mut l = tx.try_lease().expect("lease");
    l.as_mut()[..3].copy_from_slice(b"abc");
    let e = tx
        .send_lease(l, 3, &FrameMeta::default())
        .expect_err("the descriptor ring is full");
    assert!(matches!(e.error, Error::Full), "{e}");
    let l = e.lease;
    assert_eq!(&l.as_ref()[..3], b"abc", "the bytes as written");
    // Room again: the same lease goes out.
    drop(expect_frame(&mut rx));
    tx.send_lease(l, 3, &FrameMeta::default()).expect("sent");
    drop(expect_frame(&mut rx));
    assert_eq!(expect_frame(&mut rx).bytes(), b"abc");
}

#[test]
fn hostile_consumer_messages_are_protocol_errors_never_panics() {
    use std::os::fd::AsRawFd;
    let raw_send = |fd: i32, bytes: &[u8]| {
        // SAFETY: sends from a live buffer on a socket this test owns.
        unsafe {
            libc::send(
                fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        }
    };
    let header = |magic: u32, kind: u32| {
        let mut h = Vec::new();
        h.extend_from_slice(&magic.to_le_bytes());
        h.extend_from_slice(&kind.to_le_bytes());
        h.extend_from_slice(&[0u8; 16]);
        h
    };
    let magic = u32::from_le_bytes(*b"SRMS");
    let mut upstream_text = header(magic, 3);
    upstream_text.extend_from_slice(&[0xff, 0xfe]); // not UTF-8
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short", vec![1, 2, 3]),
        ("wrong magic", header(0xdead_beef, 3)),
        ("unknown kind", header(magic, 99)),
        ("a producer's blob message", header(magic, 1)),
        ("a producer's goodbye", header(magic, 2)),
        ("text that is not UTF-8", upstream_text),
        ("oversized", vec![0u8; frames::MAX_MESSAGE + 100]),
    ];
    for (what, bytes) in cases {
        let (mut tx, rx) = frames::pair(&FrameConfig::new(4, 4096)).expect("pair");
        let fd = rx.message_fd().as_raw_fd();
        if raw_send(fd, &bytes) < 0 {
            // Too big for the socket: refused by the kernel, nothing to read.
            assert_eq!(tx.try_recv_upstream().expect(what), None, "{what}");
            continue;
        }
        match tx.try_recv_upstream() {
            Err(Error::Protocol(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}
