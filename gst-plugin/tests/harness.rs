//! `gst_check::Harness` tests of each element, with a real frame-stream peer
//! on the other side of a real socket path.

use std::time::Duration;

use gst::prelude::*;
use gst_check::Harness;
use shmring::frames::{self, FrameConfig, FrameMeta, Received};
use shmring::handshake::Listener;

const T: Option<Duration> = Some(Duration::from_secs(10));

fn init() {
    gst::init().expect("gst init");
    let _ = gstshmring::register_static();
}

fn sock(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shmring-harness-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("s.sock")
}

#[test]
fn harness_sink_delivers_buffers_meta_and_eos() {
    init();
    let path = sock("sink");
    // A harness drives a sink without preroll: async=false.
    let mut h = Harness::new_parse(&format!(
        "shmringsink socket-path={} async=false",
        path.display()
    ));
    h.play();
    let p = path.clone();
    let consumer = std::thread::spawn(move || {
        let mut rx = frames::connect(&p, &FrameConfig::consumer()).expect("connect");
        let mut out = Vec::new();
        loop {
            match rx.recv(T).expect("recv") {
                Received::Frame(f) => out.push((f.bytes().to_vec(), *f.meta())),
                Received::Eos => return out,
                _ => {}
            }
        }
    });
    h.set_src_caps_str("application/x-harness");
    for i in 0..10u8 {
        let mut b = gst::Buffer::from_slice(vec![i; 32]);
        {
            let b = b.get_mut().expect("writable");
            b.set_pts(gst::ClockTime::from_mseconds(u64::from(i) * 10));
            b.set_duration(gst::ClockTime::from_mseconds(10));
            b.set_offset(u64::from(i));
            if i == 0 {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
        }
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let got = consumer.join().expect("consumer");
    assert_eq!(got.len(), 10);
    for (i, (bytes, meta)) in got.iter().enumerate() {
        assert_eq!(bytes, &vec![i as u8; 32]);
        assert_eq!(meta.pts, i as u64 * 10_000_000);
        assert_eq!(meta.duration, 10_000_000);
        assert_eq!(meta.offset, i as u64);
        let discont =
            gst::BufferFlags::from_bits_truncate(meta.flags).contains(gst::BufferFlags::DISCONT);
        assert_eq!(discont, i == 0);
    }
}

#[test]
fn harness_src_pushes_what_the_producer_sends() {
    init();
    let path = sock("src");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let producer = std::thread::spawn(move || {
        let conn = listener.accept(T).expect("accept");
        let mut tx = frames::serve(conn, &FrameConfig::new(8, 256)).expect("serve");
        tx.send_caps("application/x-harness,answer=(int)42")
            .expect("caps");
        for i in 0..3u8 {
            let mut lease = tx.try_lease().expect("free slot");
            lease.as_mut()[..8].fill(i);
            let meta = FrameMeta {
                pts: u64::from(i) * 1000,
                ..FrameMeta::default()
            };
            tx.send_lease(lease, 8, &meta).expect("send");
        }
        tx.send_eos().expect("eos");
        // Keep the producer alive until every slot came back (the three
        // frames and the caps string, within 20 s, or the test fails).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tx.in_flight() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} frames never came back",
                tx.in_flight()
            );
            match tx.wait_returns(Some(Duration::from_millis(50))) {
                Ok(()) | Err(shmring::Error::Timeout) => {}
                Err(e) => panic!("waiting for returns: {e}"),
            }
            tx.reclaim(|_| {}).expect("reclaim");
        }
        (listener, tx)
    });
    let mut h = Harness::new("shmringsrc");
    h.element()
        .expect("element")
        .set_property("socket-path", path.to_str().expect("utf-8 path"));
    h.play();
    for i in 0..3u8 {
        let b = h.pull().expect("buffer");
        assert_eq!(
            b.pts(),
            Some(gst::ClockTime::from_nseconds(u64::from(i) * 1000))
        );
        assert_eq!(&*b.map_readable().expect("map"), &[i; 8]);
    }
    let caps = h
        .sinkpad()
        .expect("harness sink pad")
        .current_caps()
        .expect("caps");
    assert_eq!(
        caps.structure(0).and_then(|s| s.get::<i32>("answer").ok()),
        Some(42)
    );
    drop(h);
    let (_listener, tx) = producer.join().expect("producer");
    assert_eq!(tx.in_flight(), 0);
}
