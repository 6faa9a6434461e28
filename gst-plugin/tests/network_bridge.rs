//! Beyond one host with GStreamer's own network elements: four
//! `gst-launch-1.0` processes on localhost, as the README's recipe runs them
//! on two machines:
//!
//! ```text
//! producer:  <source> ! shmringsink socket-path=A
//! sender:    shmringsrc socket-path=A ! <encode/payload> ! udpsink host=127.0.0.1 port=P
//! receiver:  udpsrc address=127.0.0.1 port=P caps=<rtp> ! <depayload/decode> ! shmringsink socket-path=B
//! consumer:  shmringsrc socket-path=B ! filesink
//! ```
//!
//! The middle two are the README's recipes (`udpsrc` bound to 127.0.0.1).
//! Raw video (RTP raw, RFC 4175) and audio (RTP L16) must arrive byte for
//! byte with their caps; VP8 over RTP must decode into every frame, each
//! nearest to its own source frame. Loopback only; the port is one the kernel
//! just handed out; every wait has a deadline.

mod common;
mod procs;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use procs::{run, temp_dir, wait_for_path, wait_until, Proc};

const LIMIT: Duration = Duration::from_secs(120);

/// A UDP port on 127.0.0.1 that was free a moment ago (the kernel picks it).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    s.local_addr().expect("local addr").port()
}

/// Whether an IPv4 UDP socket is bound to 127.0.0.1:`port` (/proc/net/udp).
fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

fn launch(desc: &str) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    c.env("GST_PLUGIN_PATH", common::plugin_dir())
        .args(procs::launch_args(desc));
    c
}

/// One bridge: what runs on each side of the network.
struct Bridge<'a> {
    tag: &'a str,
    /// The producer's source, e.g. `videotestsrc is-live=true ! caps`.
    source: &'a str,
    /// Between the sending host's `shmringsrc` and `udpsink`.
    send: &'a str,
    /// The caps `udpsrc` puts on the RTP packets.
    rtp_caps: &'a str,
    /// Between the receiving host's `udpsrc` and `shmringsink`.
    receive: &'a str,
    /// Bytes the consumer must write.
    bytes: usize,
}

/// Runs the four processes; returns what the consumer wrote and its
/// verbose log (caps).
fn run_bridge(b: &Bridge) -> (Vec<u8>, String) {
    let dir = temp_dir(&format!("bridge-{}", b.tag));
    let (a_sock, b_sock, out) = (dir.join("a.sock"), dir.join("b.sock"), dir.join("out.raw"));
    let port = free_udp_port();

    // The receiving host first: its udpsrc must be bound before packets come.
    let receiver = Proc::spawn(
        "receiver",
        &mut launch(&format!(
            "-q udpsrc address=127.0.0.1 port={port} buffer-size=4194304 caps=\"{}\" ! {} ! shmringsink socket-path={}",
            b.rtp_caps,
            b.receive,
            b_sock.display()
        )),
    );
    let consumer = Proc::spawn(
        "consumer",
        &mut launch(&format!(
            "-v shmringsrc socket-path={} timeout=60000 ! filesink buffer-mode=unbuffered location={}",
            b_sock.display(),
            out.display()
        )),
    );
    wait_until(&format!("udpsrc bound to 127.0.0.1:{port}"), LIMIT, || {
        udp_bound(port)
    });
    wait_for_path(&b_sock, LIMIT);

    // The sending host: the producer and the bridge to the network.
    let producer = Proc::spawn(
        "producer",
        &mut launch(&format!(
            "-q {} ! shmringsink socket-path={}",
            b.source,
            a_sock.display()
        )),
    );
    let sender = Proc::spawn(
        "sender",
        &mut launch(&format!(
            "-q shmringsrc socket-path={} timeout=60000 ! {} ! udpsink host=127.0.0.1 port={port}",
            a_sock.display(),
            b.send
        )),
    );
    producer.wait(LIMIT).ok("producer");
    // EOS crosses shmring but not UDP: the sender ends, the receiver does not.
    sender.wait(LIMIT).ok("sender");
    let size = || std::fs::metadata(&out).map_or(0, |m| m.len() as usize);
    wait_until(
        &format!("{}: {} bytes at the consumer", b.tag, b.bytes),
        Duration::from_secs(30),
        || size() >= b.bytes,
    );
    let log = consumer.stop(Duration::from_secs(10));
    receiver.stop(Duration::from_secs(10));
    let data = std::fs::read(&out).expect("consumer's file");
    assert_eq!(data.len(), b.bytes, "{}: no more than was sent", b.tag);
    let _ = std::fs::remove_dir_all(&dir);
    (data, log.stdout)
}

/// What `source` writes in one process (non-live, same frames).
fn reference(tag: &str, source: &str) -> Vec<u8> {
    let dir = temp_dir(&format!("bridge-ref-{tag}"));
    let file = dir.join("ref.raw");
    run(
        "reference",
        &mut launch(&format!(
            "-q {source} ! filesink location={}",
            file.display()
        )),
        LIMIT,
    )
    .ok("reference");
    let data = std::fs::read(&file).expect("reference file");
    let _ = std::fs::remove_dir_all(&dir);
    data
}

fn assert_caps(log: &str, want: &str) {
    assert!(
        log.lines()
            .any(|l| l.contains("GstShmringSrc") && l.contains("caps = ") && l.contains(want)),
        "the consumer's shmringsrc has caps with `{want}`\n{log}"
    );
}

const FRAMES: usize = 45;

#[test]
fn raw_video_over_rtp_arrives_byte_exact_with_caps() {
    let caps = "video/x-raw,format=RGBA,width=160,height=120,framerate=30/1";
    let frame = 160 * 120 * 4;
    let (data, log) = run_bridge(&Bridge {
        tag: "raw",
        source: &format!("videotestsrc is-live=true num-buffers={FRAMES} pattern=ball ! {caps}"),
        send: "rtpvrawpay",
        rtp_caps: "application/x-rtp,media=video,clock-rate=90000,encoding-name=RAW,sampling=RGBA,depth=(string)8,width=(string)160,height=(string)120,colorimetry=(string)SMPTE240M,payload=96",
        receive: "rtpjitterbuffer ! rtpvrawdepay",
        bytes: FRAMES * frame,
    });
    assert_caps(
        &log,
        "video/x-raw, format=(string)RGBA, width=(int)160, height=(int)120",
    );
    let want = reference(
        "raw",
        &format!("videotestsrc num-buffers={FRAMES} pattern=ball ! {caps}"),
    );
    assert_eq!(data.len() / frame, FRAMES, "frame count");
    for (i, (got, want)) in data.chunks(frame).zip(want.chunks(frame)).enumerate() {
        assert!(got == want, "frame {i} differs from the source's");
    }
}

/// Mean absolute difference of two equally long byte strings.
fn mad(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum::<u64>() as f64
        / a.len() as f64
}

#[test]
fn vp8_over_rtp_decodes_into_every_frame() {
    let caps = "video/x-raw,format=I420,width=160,height=120,framerate=30/1";
    let frame = 160 * 120 * 3 / 2;
    let (data, log) = run_bridge(&Bridge {
        tag: "vp8",
        source: &format!("videotestsrc is-live=true num-buffers={FRAMES} pattern=ball ! {caps}"),
        send: "videoconvert ! vp8enc deadline=1 ! rtpvp8pay",
        rtp_caps: "application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96",
        receive: "rtpjitterbuffer ! rtpvp8depay ! vp8dec",
        bytes: FRAMES * frame,
    });
    assert_caps(
        &log,
        "video/x-raw, format=(string)I420, width=(int)160, height=(int)120",
    );
    let want = reference(
        "vp8",
        &format!("videotestsrc num-buffers={FRAMES} pattern=ball ! {caps}"),
    );
    let refs: Vec<&[u8]> = want.chunks(frame).collect();
    assert_eq!(refs.len(), FRAMES);
    assert_eq!(data.len() / frame, FRAMES, "decoded frame count");
    for (i, got) in data.chunks(frame).enumerate() {
        let own = mad(got, refs[i]);
        // Lossy, but close: the ball on black differs from its neighbours'
        // frames by far more than the codec's error.
        assert!(
            own < 4.0,
            "frame {i}: mean difference {own:.2} from its source"
        );
        for (j, r) in refs.iter().enumerate() {
            let other = mad(got, r);
            assert!(
                own <= other,
                "decoded frame {i} is nearer source frame {j} ({other:.3}) than its own ({own:.3})"
            );
        }
    }
}

#[test]
fn audio_over_rtp_l16_arrives_byte_exact_with_caps() {
    let caps = "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved";
    let buffers = 100;
    let (data, log) = run_bridge(&Bridge {
        tag: "l16",
        source: &format!(
            "audiotestsrc is-live=true num-buffers={buffers} samplesperbuffer=480 wave=sine freq=440 ! {caps}"
        ),
        send: "audioconvert ! rtpL16pay",
        rtp_caps: "application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,encoding-params=(string)2,channels=2,payload=96",
        receive: "rtpjitterbuffer ! rtpL16depay ! audioconvert ! audio/x-raw,format=S16LE",
        bytes: buffers * 480 * 4,
    });
    assert_caps(
        &log,
        "audio/x-raw, rate=(int)48000, format=(string)S16LE, channels=(int)2",
    );
    let want = reference(
        "l16",
        &format!(
            "audiotestsrc num-buffers={buffers} samplesperbuffer=480 wave=sine freq=440 ! {caps}"
        ),
    );
    assert!(data == want, "received samples differ from the source's");
}
