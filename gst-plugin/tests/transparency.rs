//! The transparency suite (issue 15): a pipeline split in two processes by
//! shmringsink → shmringsrc must hand the element after the split point what
//! the same pipeline hands it in one process.
//!
//! Each case is a producer part (up to the split point) and a consumer part
//! (after it; its first element, or the element named `obs`, is observed).
//! - Unsplit run: `PRODUCER ! CONSUMER` in this process.
//! - Split run: `gst-launch-1.0 PRODUCER ! shmringsink` as a child process
//!   (or, for a case with a hook, this test binary as `helper_producer`), and
//!   `shmringsrc ! CONSUMER` in this process.
//!
//! A pad probe on the observed element's sink pad records every buffer
//! (content as downstream reads it, timestamps, offsets, flags, metas) and
//! every serialized event; the recordings are compared item by item (see
//! `transparency/record.rs` for what is compared and the few normalisations).
//! A failure names the case, the index, the field and both values.
//!
//! Besides the table: a late joiner on a muxed stream with headers, a
//! force-key-unit and other upstream events sent from the receiving side, a
//! socket path too long for `sockaddr_un`, non-system-memory caps features,
//! and the reason a dropped consumer reports.
//!
//! Each table case runs in its own process (this binary, that test alone):
//! a decoder crashing on a broken split run takes only its case down.
//! Every process of a case runs with `G_DEBUG=fatal-criticals`: a GStreamer
//! critical fails the case.
//! `TRANSP_SINK_PROPS` adds properties to every split run's sink;
//! `TRANSP_DUMP=dir` writes both recordings of each case there.
//!
//! The plugin for the child `gst-launch-1.0` processes comes from
//! `SHMRING_GST_PLUGIN_DIR`, else the target directory of this test
//! (`cargo build -p gst-plugin-shmring` first; `make test` does).

mod common;
#[path = "transparency/hooks.rs"]
mod hooks;
#[path = "transparency/record.rs"]
mod record;

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use record::{Item, Norm};

/// One case of the table.
#[derive(Debug, Clone, Copy)]
struct Case {
    /// Up to the split point (gst-launch syntax, no quotes: tokens are split
    /// on white space for the child's argv).
    producer: &'static str,
    /// After the split point; its first element is observed unless one is
    /// named `obs`.
    consumer: &'static str,
    /// A producer hook (`hooks.rs`) on the producer's element named `hook`.
    hook: Option<&'static str>,
    /// Consumer joins while the producer is streaming (another consumer
    /// started it); compared from its first keyframe on.
    late: bool,
    /// See `record::Norm`.
    vary_headers: bool,
    /// A text the unsplit recording must contain (checks the case itself
    /// makes what it is about: a meta, a flag, a caps field).
    expect: Option<&'static str>,
    /// Deadline of each run, seconds.
    timeout: u64,
    /// An element after the split prints GStreamer criticals even in one
    /// process (oggdemux 1.22: `gst_event_set_seqnum` with an invalid
    /// seqnum): the receiving process does not make criticals fatal.
    own_criticals: bool,
}

const fn case(producer: &'static str, consumer: &'static str) -> Case {
    Case {
        producer,
        consumer,
        hook: None,
        late: false,
        vary_headers: false,
        expect: None,
        timeout: 60,
        own_criticals: false,
    }
}

impl Case {
    const fn hook(mut self, h: &'static str) -> Self {
        self.hook = Some(h);
        self
    }
    const fn late(mut self) -> Self {
        self.late = true;
        self
    }
    const fn vary_headers(mut self) -> Self {
        self.vary_headers = true;
        self
    }
    const fn expect(mut self, e: &'static str) -> Self {
        self.expect = Some(e);
        self
    }
    const fn own_criticals(mut self) -> Self {
        self.own_criticals = true;
        self
    }
}

const FAKESINK: &str = "fakesink sync=false";
const DECODEBIN: &str = "decodebin ! fakesink sync=false";
/// Observes what decodebin outputs (decoded), not its input.
const DECODED: &str = "decodebin ! identity name=obs ! fakesink sync=false";

macro_rules! cases {
    ($($name:ident: $case:expr;)*) => {
        /// Every case of the table, by name.
        fn table() -> Vec<(&'static str, Case)> {
            vec![$((stringify!($name), $case)),*]
        }
        $(
            #[test]
            fn $name() {
                run_case(stringify!($name), $case);
            }
        )*
    };
}

cases! {
    // ---- Raw video: 13 formats at odd sizes, and 4K. ----
    raw_rgba_321x241: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=RGBA,width=321,height=241,framerate=30/1", FAKESINK);
    raw_i420_175x143: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420,width=175,height=143,framerate=25/1", FAKESINK);
    raw_nv12_99x67: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=NV12,width=99,height=67,framerate=30/1", FAKESINK);
    raw_yuy2_101x51: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=YUY2,width=101,height=51,framerate=30/1", FAKESINK);
    raw_uyvy_63x31: case("videotestsrc num-buffers=10 pattern=snow ! video/x-raw,format=UYVY,width=63,height=31,framerate=30/1", FAKESINK);
    raw_rgb_113x57: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=RGB,width=113,height=57,framerate=30/1", FAKESINK);
    raw_bgrx_129x65: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=BGRx,width=129,height=65,framerate=30/1", FAKESINK);
    raw_gray8_67x33: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=GRAY8,width=67,height=33,framerate=30/1", FAKESINK);
    raw_gray16_33x17: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=GRAY16_LE,width=33,height=17,framerate=30/1", FAKESINK);
    raw_y444_55x37: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=Y444,width=55,height=37,framerate=30/1", FAKESINK);
    raw_y42b_81x41: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=Y42B,width=81,height=41,framerate=30/1", FAKESINK);
    raw_i420_10le_77x45: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420_10LE,width=77,height=45,framerate=30/1", FAKESINK);
    raw_ayuv_31x23: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=AYUV,width=31,height=23,framerate=30/1", FAKESINK);
    raw_i420_into_videoconvert: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420,width=97,height=71,framerate=30/1", "videoconvert ! video/x-raw,format=RGBA ! fakesink sync=false");
    raw_i420_4k: case("videotestsrc num-buffers=4 pattern=smpte ! video/x-raw,format=I420,width=3840,height=2160,framerate=30/1", FAKESINK);

    // ---- Raw audio: interleaved and planar, 64-sample and 1-second buffers. ----
    audio_s16_interleaved_64: case("audiotestsrc num-buffers=50 samplesperbuffer=64 ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved", FAKESINK);
    audio_f32_planar_64: case("audiotestsrc num-buffers=50 samplesperbuffer=64 ! audio/x-raw,format=F32LE,rate=48000,channels=2,layout=non-interleaved", FAKESINK).expect("audio F32le 2 ch 64 samples");
    audio_s16_5x48000_issue: case("audiotestsrc samplesperbuffer=48000 num-buffers=5 ! audio/x-raw,rate=48000,channels=2,format=S16LE", FAKESINK);
    audio_f32_planar_1s: case("audiotestsrc samplesperbuffer=48000 num-buffers=3 ! audio/x-raw,format=F32LE,rate=48000,channels=2,layout=non-interleaved", FAKESINK).expect("48000 samples");
    audio_s24_mono_441: case("audiotestsrc num-buffers=20 samplesperbuffer=441 wave=square ! audio/x-raw,format=S24LE,rate=44100,channels=1", FAKESINK);
    audio_planar_into_audioconvert: case("audiotestsrc num-buffers=20 samplesperbuffer=256 ! audio/x-raw,format=S16LE,rate=32000,channels=2,layout=non-interleaved", "audioconvert ! audio/x-raw,layout=interleaved ! fakesink sync=false");

    // ---- Encoded streams, observed at the decoder's input. ----
    vp8: case("videotestsrc num-buffers=20 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! vp8enc deadline=1 cpu-used=-4 keyframe-max-dist=10", DECODEBIN);
    vp9: case("videotestsrc num-buffers=15 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! vp9enc deadline=1 cpu-used=4 keyframe-max-dist=10", DECODEBIN);
    jpeg: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,width=320,height=240,framerate=30/1 ! jpegenc", DECODEBIN);
    openh264: case("videotestsrc num-buffers=15 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! openh264enc", DECODEBIN);
    // (Debian 12's libde265 aborts on x265's output even in one process: a
    // parser, not decodebin, takes the H.265 streams.)
    x265_720p: case("videotestsrc num-buffers=3 pattern=snow ! video/x-raw,width=1280,height=720,framerate=30/1 ! x265enc speed-preset=ultrafast option-string=frame-threads=1:pools=none", "h265parse ! fakesink sync=false");
    opus: case("audiotestsrc num-buffers=30 ! audio/x-raw,rate=48000,channels=2 ! opusenc", DECODEBIN);
    vorbis_streamheader: case("audiotestsrc num-buffers=20 ! audio/x-raw,rate=44100,channels=2 ! vorbisenc", DECODEBIN).expect("streamheader");
    flac_streamheader: case("audiotestsrc num-buffers=20 ! audio/x-raw,rate=44100,channels=2,format=S16LE ! flacenc", DECODEBIN).expect("streamheader");
    theora_streamheader: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! theoraenc", DECODEBIN).expect("streamheader");

    // ---- Muxed streams into decodebin. ----
    webm_vp8_into_decodebin: case("videotestsrc num-buffers=20 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! vp8enc deadline=1 cpu-used=-4 keyframe-max-dist=10 ! webmmux streamable=true", DECODEBIN).vary_headers().expect("HEADER");
    webm_vp8_decoded: case("videotestsrc num-buffers=20 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! vp8enc deadline=1 cpu-used=-4 keyframe-max-dist=10 ! webmmux streamable=true", DECODED).vary_headers();
    matroska_vp9_opus_into_decodebin: case("videotestsrc num-buffers=15 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! vp9enc deadline=1 cpu-used=4 ! mux. audiotestsrc num-buffers=25 ! audio/x-raw,rate=48000,channels=2 ! opusenc ! mux. matroskamux name=mux streamable=true", DECODEBIN).vary_headers();
    mpegts_h264_into_decodebin: case("videotestsrc num-buffers=15 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! openh264enc ! mpegtsmux", DECODEBIN);
    mpegts_h264_decoded: case("videotestsrc num-buffers=15 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! openh264enc ! mpegtsmux", DECODED);
    ogg_vorbis_decoded: case("audiotestsrc num-buffers=20 ! audio/x-raw,rate=44100,channels=2 ! vorbisenc ! oggmux", DECODED).own_criticals();
    ogg_theora_decoded: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! theoraenc ! oggmux", DECODED).own_criticals();
    webm_headers_into_matroskademux: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! vp8enc deadline=1 cpu-used=-4 ! webmmux streamable=true", "matroskademux ! fakesink sync=false").vary_headers().expect("HEADER");

    // ---- Decoders whose output has padded strides (GstVideoMeta). ----
    vp9dec_66x50_padded: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=I420,width=66,height=50,framerate=30/1 ! vp9enc deadline=1 cpu-used=4 ! vp9dec", FAKESINK);
    vp9dec_66x50_into_videoconvert: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=I420,width=66,height=50,framerate=30/1 ! vp9enc deadline=1 cpu-used=4 ! vp9dec", "videoconvert ! video/x-raw,format=RGBA ! fakesink sync=false");
    vp8dec_65x49_padded: case("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=I420,width=65,height=49,framerate=30/1 ! vp8enc deadline=1 cpu-used=-4 ! vp8dec", FAKESINK);

    // ---- Caps that change, up and down. ----
    concat_caps_up_and_down_issue: case("videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! c. videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=640,height=480,framerate=30/1 ! c. videotestsrc num-buffers=10 ! video/x-raw,format=RGBA,width=160,height=120,framerate=30/1 ! c. concat name=c", FAKESINK);
    concat_caps_down: case("videotestsrc num-buffers=5 ! video/x-raw,format=RGBA,width=640,height=480,framerate=30/1 ! c. videotestsrc num-buffers=5 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! c. concat name=c", FAKESINK);
    concat_audio_formats: case("audiotestsrc num-buffers=10 samplesperbuffer=480 ! audio/x-raw,format=S16LE,rate=48000,channels=2 ! c. audiotestsrc num-buffers=10 samplesperbuffer=4410 ! audio/x-raw,format=F32LE,rate=44100,channels=1 ! c. concat name=c", FAKESINK);
    concat_vp8_resolution_up: case("videotestsrc num-buffers=5 ! video/x-raw,width=160,height=120,framerate=30/1 ! vp8enc deadline=1 cpu-used=-4 ! c. videotestsrc num-buffers=5 ! video/x-raw,width=640,height=480,framerate=30/1 ! vp8enc deadline=1 cpu-used=-4 ! c. concat name=c", DECODEBIN);

    // ---- A consumer joining a muxed stream with headers late. ----
    late_joiner_raw_video: case("videotestsrc num-buffers=90 pattern=ball ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! identity sync=true", FAKESINK).late();
    late_joiner_webm_bytes: case("videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! identity sync=true ! vp8enc deadline=1 cpu-used=-4 keyframe-max-dist=10 ! webmmux streamable=true", FAKESINK).late().vary_headers().expect("HEADER");
    late_joiner_webm_headers: case("videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! identity sync=true ! vp8enc deadline=1 cpu-used=-4 keyframe-max-dist=10 ! webmmux streamable=true", "matroskademux ! fakesink sync=false").late().vary_headers().expect("HEADER");

    // ---- Metas. ----
    crop_meta_videocrop: case("videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! videocrop left=10 right=7 top=5 bottom=3", FAKESINK).expect("crop");
    reference_timestamp_meta: case("videotestsrc num-buffers=10 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! identity name=hook", FAKESINK).hook("refts").expect("reference-timestamp");
    timecode_meta: case("videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! timecodestamper", FAKESINK).expect("timecode");

    // ---- Events and flags. ----
    toc_event: case("videotestsrc num-buffers=8 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! identity name=hook", FAKESINK).hook("toc").expect("event toc");
    custom_events: case("videotestsrc num-buffers=8 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! identity name=hook", FAKESINK).hook("custom").expect("x-shmring-custom");
    gap_event: case("audiotestsrc num-buffers=8 samplesperbuffer=480 ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! identity name=hook", FAKESINK).hook("gap").expect("event gap");
    tags_event: case("videotestsrc num-buffers=8 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! taginject tags=title=shmring-test", FAKESINK).expect("shmring-test");
    every_buffer_flag: case("videotestsrc num-buffers=12 ! video/x-raw,format=GRAY8,width=32,height=16,framerate=30/1 ! identity name=hook", FAKESINK).hook("flags").expect("SYNC_AFTER");

    // ---- Any buffer size. ----
    sizes_1_byte_to_24_mib: case("fakesrc num-buffers=24 sizetype=fixed sizemax=16 ! application/x-shmring-test ! identity name=hook", FAKESINK).hook("sizes");
    one_byte_buffers: case("fakesrc num-buffers=40 sizetype=fixed sizemax=1 filltype=pattern-span ! application/x-shmring-test", FAKESINK);
    forty_mib_buffers: case("fakesrc num-buffers=3 sizetype=fixed sizemax=41943040 filltype=pattern-span ! application/x-shmring-test", FAKESINK);
}

// ---------------------------------------------------------------------------
// Runs.

/// What one run recorded, and how it ended.
struct Run {
    items: Vec<Item>,
    /// The consumer pipeline's error (or deadline), if it did not reach EOS.
    error: Option<String>,
    /// The producer's failure (exit status, criticals), split runs only.
    producer: Option<String>,
    /// Lines the producer hook reported.
    log: Vec<String>,
    /// Buffers recorded when `on_tick` acted (see `run_pipeline`).
    acted_at: Option<usize>,
    /// The sink's warnings, split runs only.
    warnings: Vec<String>,
    /// Late-joiner split runs: what the consumer that started the stream
    /// received.
    first: Option<Box<Run>>,
}

/// Called every 20 ms while a consumer pipeline plays, with the recording so
/// far and the observed pad; returns true once it acted.
type Tick<'a> = &'a mut dyn FnMut(&record::Shared, &gst::Pad) -> bool;

/// `consumer` with its first element named `obs`, unless one is.
fn with_obs(consumer: &str) -> String {
    if consumer.contains("name=obs") {
        return consumer.to_string();
    }
    match consumer.split_once(' ') {
        Some((first, rest)) => format!("{first} name=obs {rest}"),
        None => format!("{consumer} name=obs"),
    }
}

fn parse(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("pipeline {desc:?}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("a pipeline")
}

/// Plays `p` with a recording probe on `obs`'s sink pad until EOS, an error
/// or `timeout`.
fn run_pipeline(p: &gst::Pipeline, timeout: Duration, tick: Option<Tick>) -> Run {
    /// Stops the pipeline however this function ends (a panic in `tick`
    /// included: a playing pipeline must not be disposed).
    struct Stop<'a>(&'a gst::Pipeline);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.set_state(gst::State::Null);
        }
    }
    let _stop = Stop(p);
    let obs = p.by_name("obs").expect("observed element");
    let pad = obs.static_pad("sink").expect("observed element's sink pad");
    let rec = record::install(&pad);
    let bus = p.bus().expect("bus");
    let mut error = None;
    let mut acted_at = None;
    let mut tick = tick;
    if let Err(e) = p.set_state(gst::State::Playing) {
        // The element's reason is on the bus.
        let why = bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => {
                    Some(format!("{} ({})", e.error(), e.debug().unwrap_or_default()))
                }
                _ => None,
            })
            .unwrap_or_default();
        error = Some(format!("set_state(Playing): {e}: {why}"));
    }
    let deadline = Instant::now() + timeout;
    while error.is_none() {
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => break,
            Some(gst::MessageView::Error(e)) => {
                error = Some(format!(
                    "error from {}: {} ({})",
                    e.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    e.error(),
                    e.debug().unwrap_or_default()
                ));
            }
            _ => {}
        }
        if let Some(t) = tick.as_mut() {
            if acted_at.is_none() && t(&rec, &pad) {
                acted_at = Some(lock(&rec).buffers().count());
            }
        }
        if Instant::now() > deadline {
            error = Some(format!("no EOS within {} s", timeout.as_secs()));
        }
    }
    let _ = p.set_state(gst::State::Null);
    let items = std::mem::take(&mut lock(&rec).items);
    Run {
        items,
        error,
        producer: None,
        log: Vec::new(),
        acted_at,
        warnings: Vec::new(),
        first: None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unsplit(case: &Case, tick: Option<Tick>) -> Run {
    let p = parse(&format!("{} ! {}", case.producer, with_obs(case.consumer)));
    let log = Arc::new(Mutex::new(Vec::new()));
    if let Some(h) = case.hook {
        let l = log.clone();
        hooks::install(&p, h, Arc::new(move |s| lock(&l).push(s)));
    }
    let mut run = run_pipeline(&p, Duration::from_secs(case.timeout), tick);
    run.log = std::mem::take(&mut lock(&log));
    run
}

/// A child process, killed and reaped when dropped; its output collected by
/// threads (so that a full pipe never blocks it).
struct Proc {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn child");
        let out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                all.push_str(&l);
                all.push('\n');
            }
            all
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Waits up to `limit` for the exit; kills the child if it is still
    /// running. Returns (exited by itself with success, stdout, stderr).
    fn finish(mut self, limit: Duration) -> (Result<(), String>, String, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break Err(format!("still running after {} s: killed", limit.as_secs()));
                }
            }
        };
        let out = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let r = match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("exited with {s}")),
            Err(e) => Err(e),
        };
        (r, out, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A short directory for a socket (sockaddr_un holds 107 bytes), removed
/// when dropped (a failing case included).
struct SockDir(PathBuf);

impl SockDir {
    fn new(tag: &str) -> SockDir {
        let short: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(24)
            .collect();
        let dir = PathBuf::from(format!("/tmp/shtr-{}-{short}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("socket dir");
        SockDir(dir)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("s.sock")
    }
}

impl Drop for SockDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The producer half: `gst-launch-1.0 PRODUCER ! shmringsink`, or for a case
/// with a hook this test binary as `helper_producer`.
fn spawn_producer(case: &Case, sock: &Path, sink_props: &str) -> Proc {
    // TRANSP_SINK_PROPS: properties for every split run's sink (to look
    // past one failure at the next, e.g. `slot-size=50000000`).
    let extra = std::env::var("TRANSP_SINK_PROPS").unwrap_or_default();
    let sink = format!(
        "shmringsink socket-path={} {sink_props} {extra}",
        sock.display()
    );
    let cmd = match case.hook {
        None => {
            let mut c = Command::new("gst-launch-1.0");
            c.env("GST_PLUGIN_PATH", common::plugin_dir())
                .env("G_DEBUG", "fatal-criticals")
                .env("GST_DEBUG", "shmringsink:2")
                .env("GST_DEBUG_NO_COLOR", "1")
                .arg("-q");
            c.args(case.producer.split_whitespace())
                .arg("!")
                .args(sink.split_whitespace());
            c
        }
        Some(h) => {
            let mut c = Command::new(std::env::current_exe().expect("test binary"));
            c.args(["--exact", "helper_producer", "--ignored", "--nocapture"])
                .args(["--test-threads=1", "--quiet"])
                .env("TRANSP_PRODUCER", format!("{} ! {sink}", case.producer))
                .env("TRANSP_HOOK", h)
                .env("TRANSP_TIMEOUT", case.timeout.to_string())
                .env("G_DEBUG", "fatal-criticals")
                .env("GST_DEBUG", "shmringsink:2")
                .env("GST_DEBUG_NO_COLOR", "1");
            c
        }
    };
    Proc::spawn(cmd)
}

/// The producer's verdict: its exit and whether it printed a critical or
/// an error.
fn producer_verdict(r: Result<(), String>, err: &str) -> Option<String> {
    let criticals: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("CRITICAL") || l.contains("ERROR"))
        .take(4)
        .collect();
    match r {
        Err(e) => Some(format!("producer {e}: {}", err.trim())),
        Ok(()) if !criticals.is_empty() => {
            Some(format!("producer printed: {}", criticals.join(" | ")))
        }
        Ok(()) => None,
    }
}

/// The sink's warnings (its reasons for dropping a consumer are there),
/// shown with a failure.
fn sink_warnings(err: &str) -> Vec<String> {
    err.lines()
        .filter(|l| l.contains("WARN") && l.contains("shmringsink"))
        .map(|l| match l.find("<shmringsink") {
            Some(i) => format!("sink: {}", &l[i..]),
            None => l.to_string(),
        })
        .take(4)
        .collect()
}

/// The consumer half, `shmringsrc ! CONSUMER`, in this process.
fn consumer(case: &Case, sock: &Path) -> gst::Pipeline {
    parse(&format!(
        "shmringsrc socket-path={} timeout=30000 ! {}",
        sock.display(),
        with_obs(case.consumer)
    ))
}

fn split(name: &str, case: &Case, tick: Option<Tick>) -> Run {
    let dir = SockDir::new(name);
    let sock = dir.sock();
    let producer = spawn_producer(case, &sock, "");
    // A late joiner: a first consumer (here too, recorded) starts the
    // stream (the sink waits for a first consumer); this one connects once
    // that one has had 20 buffers.
    let first = if case.late {
        let (tx, rx) = mpsc::channel();
        let p1 = consumer(case, &sock);
        let timeout = Duration::from_secs(case.timeout);
        let first = std::thread::spawn(move || {
            let mut notify = move |rec: &record::Shared, _: &gst::Pad| {
                let enough = lock(rec).buffers().count() >= 20;
                if enough {
                    let _ = tx.send(());
                }
                enough
            };
            run_pipeline(&p1, timeout, Some(&mut notify))
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let (_, _, err) = producer.finish(Duration::from_secs(1));
            let r = first.join().ok();
            let n = r.as_ref().map_or(0, |r| {
                r.items
                    .iter()
                    .filter(|i| matches!(i, Item::Buffer(_)))
                    .count()
            });
            panic!(
                "{name}: the first consumer (which starts the stream for the late one) got {n} buffers, not 20: {}\n{}",
                r.and_then(|r| r.error).unwrap_or_default(),
                sink_warnings(&err).join("\n")
            )
        }
        Some(first)
    } else {
        None
    };
    let p = consumer(case, &sock);
    let mut run = run_pipeline(&p, Duration::from_secs(case.timeout), tick);
    drop(p);
    // A producer whose consumer failed may wait for it: a short grace.
    let grace = if run.error.is_some() { 3 } else { 30 };
    let (r, out, err) = producer.finish(Duration::from_secs(grace));
    run.producer = producer_verdict(r, &err);
    run.warnings = sink_warnings(&err);
    run.log = out
        .lines()
        .filter(|l| l.starts_with("UPSTREAM") || l.starts_with("STATS"))
        .map(String::from)
        .collect();
    if let Some(f) = first {
        run.first = f.join().ok().map(Box::new);
    }
    drop(dir);
    run
}

/// The first consumer's recording seen from where the late joiner came in: the
/// stream-start, caps, segment and tags in force there and the stream's
/// header buffers, then everything from the buffer the joiner got first
/// after the headers. Also checks that buffer is a keyframe after the
/// start, and lets its `DISCONT` pass (a joiner's stream is discontinuous
/// there).
fn late_view(a: &[Item], b: &mut [Item]) -> Result<Vec<Item>, String> {
    let is_header = |x: &record::Buf| x.flags.contains(gst::BufferFlags::HEADER);
    let (bi, first) = b
        .iter()
        .enumerate()
        .find_map(|(i, it)| match it {
            Item::Buffer(x) if !is_header(x) => Some((i, x.clone())),
            _ => None,
        })
        .ok_or("the late joiner got no buffer after the headers")?;
    if first.flags.contains(gst::BufferFlags::DELTA_UNIT) {
        return Err(format!(
            "the late joiner's first buffer after the headers is a delta unit (pts {:?})",
            first.pts
        ));
    }
    if first.pts.is_none_or(|p| p.is_zero()) {
        return Err("the late joiner got the stream from its start: it did not join late".into());
    }
    if let Item::Buffer(x) = &mut b[bi] {
        x.flags.remove(gst::BufferFlags::DISCONT);
    }
    let ai = a
        .iter()
        .position(|it| matches!(it, Item::Buffer(x) if !is_header(x) && x.pts == first.pts && x.content == first.content))
        .ok_or_else(|| format!("the late joiner's first buffer (pts {:?}, {}) is not in the unsplit stream", first.pts, first.content))?;
    let before = &a[..ai];
    let last = |k: &str| {
        before.iter().rev().find(|it| match it {
            Item::Event(e) => e.to_string().starts_with(k),
            Item::Buffer(_) => false,
        })
    };
    let mut v: Vec<Item> = ["stream-start", "caps", "segment", "tag"]
        .iter()
        .filter_map(|k| last(k).cloned())
        .collect();
    v.extend(
        before
            .iter()
            .filter(|it| matches!(it, Item::Buffer(x) if is_header(x)))
            .cloned(),
    );
    // Events just before that buffer (after the previous one) went out after
    // the joiner was in: it gets them too (e.g. the encoder's downstream
    // force-key-unit that answers the keyframe the sink asked for it).
    let since = before
        .iter()
        .rposition(|it| matches!(it, Item::Buffer(_)))
        .map_or(0, |i| i + 1);
    v.extend(
        before[since..]
            .iter()
            .filter(|it| {
                !["stream-start", "caps", "segment", "tag"]
                    .iter()
                    .any(|k| matches!(it, Item::Event(e) if e.to_string().starts_with(k)))
            })
            .cloned(),
    );
    v.extend(a[ai..].iter().cloned());
    Ok(v)
}

/// Runs case `name` in a child process (this test binary, that test alone):
/// a decoder that crashes on what a broken split run hands it takes only
/// its own case down, and the case's report names it.
fn run_case(name: &str, case: Case) {
    if std::env::var_os("TRANSP_IN_CHILD").is_some() {
        return run_case_here(name, case);
    }
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args([
        "--exact",
        name,
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ])
    .env("TRANSP_IN_CHILD", "1")
    .env("RUST_BACKTRACE", "0");
    // A GStreamer critical in either process (an element misused, a bad
    // meta or event handed downstream) aborts it: the case fails.
    if !case.own_criticals {
        c.env("G_DEBUG", "fatal-criticals");
    }
    let limit = Duration::from_secs(3 * case.timeout + 30);
    let (r, out, err) = Proc::spawn(c).finish(limit);
    if let Err(e) = r {
        // The child's panic message (or its last words if it crashed).
        let all = format!("{out}\n{err}");
        let msg = match all.find("panicked at") {
            Some(i) => all[i..].to_string(),
            None => all
                .lines()
                .filter(|l| !l.trim().is_empty())
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let msg: String = msg
            .lines()
            .filter(|l| !l.starts_with("note: run with") && !l.starts_with("failures:"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n");
        panic!("{name}: the case's process {e}\n{msg}");
    }
}

fn run_case_here(name: &str, case: Case) {
    common::init();
    let a = unsplit(&case, None);
    if let Some(e) = &a.error {
        panic!("{name}: the unsplit pipeline itself failed (a broken case): {e}");
    }
    assert!(
        a.items.iter().any(|i| matches!(i, Item::Buffer(_))),
        "{name}: the unsplit run recorded no buffer (a broken case)"
    );
    if let Some(x) = case.expect {
        let all: String = a.items.iter().map(|i| format!("{i}\n")).collect();
        assert!(
            all.contains(x),
            "{name}: the unsplit run has no {x:?}: the case does not test what it claims"
        );
    }
    let mut b = split(name, &case, None);
    // TRANSP_DUMP=dir: both recordings, an item a line, to look at.
    if let Some(dir) = std::env::var_os("TRANSP_DUMP") {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        for (side, items) in [("unsplit", &a.items), ("split", &b.items)] {
            let text: String = items
                .iter()
                .enumerate()
                .map(|(i, it)| format!("[{i}] {it}\n"))
                .collect();
            let _ = std::fs::write(dir.join(format!("{name}.{side}.txt")), text);
        }
    }
    let norm = Norm {
        vary_headers: case.vary_headers,
    };
    let mut problems = Vec::new();
    if let Some(e) = &b.error {
        problems.push(format!("{name}: the receiving pipeline: {e}"));
    }
    if let Some(e) = &b.producer {
        problems.push(format!("{name}: {e}"));
    }
    let a_items = if case.late {
        // The late joiner must get what the first consumer got, from a
        // keyframe on (the sink may ask the encoder for that keyframe: then
        // neither matches the unsplit run after the join).
        let Some(first) = b.first.take() else {
            panic!("{name}: no first consumer recorded");
        };
        if let Some(e) = &first.error {
            problems.push(format!("{name}: the first consumer: {e}"));
        }
        // Up to its 20th buffer (before the late one joined and any key
        // unit it asked for) the first consumer got what the unsplit
        // run's element got.
        let upto = |items: &[Item]| {
            let mut n = 0;
            let end = items
                .iter()
                .position(|i| {
                    n += usize::from(matches!(i, Item::Buffer(_)));
                    n == 20
                })
                .map_or(items.len(), |p| p + 1);
            items[..end].to_vec()
        };
        if let Err(d) = record::compare(
            &format!("{name} (its first 20 buffers)"),
            ("unsplit", "first-consumer"),
            &record::normalise(&upto(&a.items), norm),
            &record::normalise(&upto(&first.items), norm),
        ) {
            problems.push(d);
        }
        match late_view(&first.items, &mut b.items) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                a.items.clone()
            }
        }
    } else {
        a.items.clone()
    };
    let names = if case.late {
        ("first-consumer", "late-joiner")
    } else {
        ("unsplit", "split")
    };
    if let Err(d) = record::compare(
        name,
        names,
        &record::normalise(&a_items, norm),
        &record::normalise(&b.items, norm),
    ) {
        problems.push(d);
    }
    if !problems.is_empty() {
        problems.extend(b.warnings.iter().map(|w| format!("{name}: {w}")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// The helper producer (a child process of the split runs with a hook).

#[test]
#[ignore = "the producer child process of split runs with a hook; not a test by itself"]
fn helper_producer() {
    let (Ok(desc), Ok(hook)) = (
        std::env::var("TRANSP_PRODUCER"),
        std::env::var("TRANSP_HOOK"),
    ) else {
        return;
    };
    let timeout: u64 = std::env::var("TRANSP_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    common::init();
    let p = parse(&desc);
    hooks::install(
        &p,
        &hook,
        Arc::new(|s| {
            use std::io::Write as _;
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{s}");
            let _ = o.flush();
        }),
    );
    p.set_state(gst::State::Playing).expect("playing");
    let bus = p.bus().expect("bus");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(timeout),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    if hook == "stats" {
        print_sink_stats(&p);
    }
    let _ = p.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => {
            eprintln!("ERROR: {} ({:?})", e.error(), e.debug());
            std::process::exit(1);
        }
        _ => {
            eprintln!("ERROR: no EOS within {timeout} s");
            std::process::exit(1);
        }
    }
}

/// Prints the stats of the pipeline's `shmringsink` as one `STATS` line.
fn print_sink_stats(p: &gst::Pipeline) {
    let sink = p
        .iterate_sinks()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "shmringsink"));
    if let Some(s) = sink {
        use std::io::Write as _;
        let st = s.property::<gst::Structure>("stats");
        let g = |k: &str| st.get::<u64>(k).unwrap_or(u64::MAX);
        let mut o = std::io::stdout().lock();
        let _ = writeln!(
            o,
            "STATS zero-copy={} copied={} arena-switches={} leaked-slots={}",
            g("zero-copy"),
            g("copied"),
            g("arena-switches"),
            g("leaked-slots")
        );
        let _ = o.flush();
    }
}

// ---------------------------------------------------------------------------
// Cases outside the table.

/// Caps that grow while the consumer stays connected (320x240, then 720p):
/// the split run hands downstream what the unsplit one does, and once the
/// consumer drained its first arena the sink switches it to one with
/// bigger slots, so the 720p frames cross zero-copy again (before arena
/// switches, every one of them was copied into a blob of its own).
#[test]
fn caps_that_grow_cross_zero_copy_after_an_arena_switch() {
    common::init();
    const SMALL: u64 = 10;
    const BIG: u64 = 30;
    let producer = "videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! c. videotestsrc num-buffers=30 pattern=ball ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! c. concat name=c ! identity name=hook";
    let case = case(producer, FAKESINK).hook("stats");
    let a = unsplit(&case, None);
    assert!(a.error.is_none(), "unsplit: {:?}", a.error);
    let b = split("capsgrow", &case, None);
    assert!(b.error.is_none(), "split: {:?} {:?}", b.error, b.warnings);
    assert!(b.producer.is_none(), "{:?}", b.producer);
    if let Err(d) = record::compare(
        "caps_that_grow",
        ("unsplit", "split"),
        &record::normalise(&a.items, Norm::default()),
        &record::normalise(&b.items, Norm::default()),
    ) {
        panic!("{d}");
    }
    let stats = b
        .log
        .iter()
        .find(|l| l.starts_with("STATS"))
        .unwrap_or_else(|| panic!("no stats from the producer: {:?}", b.log));
    eprintln!("caps_that_grow: {stats}");
    let field = |k: &str| -> u64 {
        stats
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {stats}"))
    };
    assert_eq!(field("zero-copy") + field("copied"), SMALL + BIG, "{stats}");
    assert_eq!(field("leaked-slots"), 0, "{stats}");
    assert!(
        field("arena-switches") >= 1,
        "the consumer was never switched: {stats}"
    );
    // The first big frames go as blobs while the consumer still holds a
    // slot of the first arena; then every one is zero-copy.
    assert!(
        field("copied") <= 5,
        "{} of {BIG} 720p frames copied after the caps grew: {stats}",
        field("copied")
    );
}

#[test]
fn the_table_has_at_least_40_cases_with_distinct_pipelines() {
    let t = table();
    assert!(t.len() >= 40, "{} cases", t.len());
    let mut seen = std::collections::HashSet::new();
    for (name, c) in &t {
        assert!(
            seen.insert((c.producer, c.consumer, c.hook)),
            "{name} repeats another case"
        );
    }
}

/// Every case's producer is deterministic: two unsplit runs compare equal
/// (else a split run could not be expected to match). Slow (every case
/// twice in one process): run it after changing the table.
#[test]
#[ignore = "checks the table itself; run after changing it"]
fn every_case_is_deterministic() {
    common::init();
    let mut bad = Vec::new();
    for (name, case) in table() {
        let a = unsplit(&case, None);
        let b = unsplit(&case, None);
        let norm = Norm {
            vary_headers: case.vary_headers,
        };
        if let Err(d) = record::compare(
            name,
            ("first", "second"),
            &record::normalise(&a.items, norm),
            &record::normalise(&b.items, norm),
        ) {
            bad.push(d);
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Paced (30 fps in real time) VP8 with a keyframe only every 1000 frames:
/// a keyframe after the first comes only on request.
const PACED_VP8: &str = "videotestsrc num-buffers=45 pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 ! identity sync=true ! vp8enc deadline=1 cpu-used=-4 keyframe-max-dist=1000";

/// Whether a buffer recorded after the first `n` is a keyframe.
fn keyframe_after(items: &[Item], n: usize) -> bool {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Buffer(b) => Some(b),
            Item::Event(_) => None,
        })
        .skip(n.max(1))
        .any(|b| !b.flags.contains(gst::BufferFlags::DELTA_UNIT))
}

#[test]
fn force_key_unit_from_the_receiver_reaches_the_encoder() {
    common::init();
    let case = case(PACED_VP8, FAKESINK);
    let mut ask = |rec: &record::Shared, pad: &gst::Pad| {
        if lock(rec).buffers().count() < 5 {
            return false;
        }
        let ev = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .count(1)
            .build();
        // Whether an element upstream handled it shows in the keyframes.
        let _ = pad.push_event(ev);
        true
    };
    let a = unsplit(&case, Some(&mut ask));
    assert!(a.error.is_none(), "unsplit: {:?}", a.error);
    let at = a.acted_at.expect("unsplit: the request was sent");
    assert!(
        keyframe_after(&a.items, at),
        "unsplit: no keyframe after the request (the case is broken)"
    );
    let b = split("fku", &case, Some(&mut ask));
    assert!(
        b.error.is_none(),
        "split: the receiving pipeline: {:?}",
        b.error
    );
    let at = b.acted_at.expect("split: the request was sent");
    assert!(
        keyframe_after(&b.items, at),
        "split: the encoder made no keyframe after the receiver's force-key-unit (sent after buffer {at} of {})",
        b.items.iter().filter(|i| matches!(i, Item::Buffer(_))).count()
    );
}

#[test]
fn navigation_qos_and_reconfigure_from_the_receiver_reach_the_producer() {
    common::init();
    let case = case(
        "videotestsrc num-buffers=45 pattern=ball ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! identity sync=true ! identity name=hook",
        FAKESINK,
    )
    .hook("upstream");
    let mut send = |rec: &record::Shared, pad: &gst::Pad| {
        if lock(rec).buffers().count() < 5 {
            return false;
        }
        let nav = gst::Structure::builder("application/x-gst-navigation")
            .field("event", "mouse-move")
            .field("pointer_x", 12.5f64)
            .field("pointer_y", 7.25f64)
            .build();
        let _ = pad.push_event(gst::event::Navigation::new(nav));
        let _ = pad.push_event(gst::event::Qos::new(
            gst::QOSType::Underflow,
            0.125,
            1_234_567,
            gst::ClockTime::from_mseconds(100),
        ));
        let _ = pad.push_event(gst::event::Reconfigure::new());
        true
    };
    // Each event the receiver sent, as the producer's hook logged it after
    // the receiver had its 5 buffers (a reconfigure the sink makes itself
    // when a consumer joins comes before that).
    let arrived = |log: &[String], what: &str, detail: &str| {
        log.iter().any(|l| {
            let after: u64 = l
                .split("after=")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            after >= 5 && l.contains(what) && l.contains(detail)
        })
    };
    let a = unsplit(&case, Some(&mut send));
    assert!(a.error.is_none(), "unsplit: {:?}", a.error);
    for (w, d) in [("Navigation", "12.5"), ("Qos", ""), ("Reconfigure", "")] {
        assert!(
            arrived(&a.log, w, d),
            "unsplit: no {w} upstream (the case is broken): {:?}",
            a.log
        );
    }
    let b = split("upstream", &case, Some(&mut send));
    assert!(
        b.error.is_none(),
        "split: the receiving pipeline: {:?}",
        b.error
    );
    assert!(b.producer.is_none(), "split: {:?}", b.producer);
    let nav = arrived(&b.log, "Navigation", "12.5");
    let qos = arrived(&b.log, "Qos", "");
    let reconf = arrived(&b.log, "Reconfigure", "");
    assert!(
        nav && qos && reconf,
        "split: upstream events that reached the producer after the receiver sent them (navigation {nav}, qos {qos}, reconfigure {reconf}): {:?}",
        b.log
    );
}

/// A socket path of 120 bytes (sockaddr_un holds 107 and a NUL), in a
/// directory removed with the returned guard.
fn long_socket_path() -> (SockDir, PathBuf) {
    let dir = SockDir::new("long");
    let name = "x".repeat(120 - dir.0.as_os_str().len() - 1);
    let p = dir.0.join(name);
    assert_eq!(p.as_os_str().len(), 120);
    (dir, p)
}

fn names_limit(s: &str) -> bool {
    s.contains("107") || s.contains("108")
}

#[test]
fn shmringsink_rejects_a_socket_path_too_long_with_the_limit() {
    let (_dir, path) = long_socket_path();
    let mut c = Command::new("gst-launch-1.0");
    c.env("GST_PLUGIN_PATH", common::plugin_dir()).args(
        format!(
            "-q videotestsrc num-buffers=10 ! shmringsink socket-path={}",
            path.display()
        )
        .split_whitespace(),
    );
    let (r, out, err) = Proc::spawn(c).finish(Duration::from_secs(20));
    assert!(
        r.is_err(),
        "the sender succeeded with a 120-byte socket path"
    );
    assert!(
        !r.as_ref().is_err_and(|e| e.contains("killed")),
        "the sender did not fail: it waited until killed"
    );
    assert!(
        names_limit(&format!("{out}{err}")),
        "the sender's error does not name the limit: {err}"
    );
}

#[test]
fn shmringsrc_rejects_a_socket_path_too_long_with_the_limit() {
    common::init();
    let (_dir, path) = long_socket_path();
    let p = parse(&format!(
        "shmringsrc socket-path={} timeout=2000 ! fakesink name=obs",
        path.display()
    ));
    let run = run_pipeline(&p, Duration::from_secs(20), None);
    let e = run
        .error
        .expect("the receiver ran with a 120-byte socket path");
    assert!(!e.starts_with("no EOS"), "the receiver hung: {e}");
    assert!(
        names_limit(&e),
        "the receiver's error does not name the limit: {e}"
    );
}

#[test]
fn shmringsink_refuses_non_system_memory_caps_features() {
    common::init();
    let sink = gst::ElementFactory::make("shmringsink")
        .build()
        .expect("shmringsink");
    let pad = sink.static_pad("sink").expect("sink pad");
    for feature in ["memory:DMABuf", "memory:GLMemory", "memory:VASurface"] {
        let caps = gst::Caps::builder("video/x-raw")
            .features([feature])
            .field("format", "RGBA")
            .field("width", 64i32)
            .field("height", 48i32)
            .field("framerate", gst::Fraction::new(30, 1))
            .build();
        assert!(
            !pad.query_accept_caps(&caps),
            "shmringsink accepts {caps}: its buffers would arrive as system memory"
        );
        let allowed = pad.query_caps(Some(&caps));
        assert!(
            allowed.is_empty(),
            "shmringsink's caps query with filter {caps} answers {allowed}"
        );
    }
    // System memory (the default feature) is accepted.
    let plain = gst::Caps::builder("video/x-raw")
        .field("format", "RGBA")
        .field("width", 64i32)
        .field("height", 48i32)
        .field("framerate", gst::Fraction::new(30, 1))
        .build();
    assert!(pad.query_accept_caps(&plain), "shmringsink refuses {plain}");
}

#[test]
fn a_consumer_the_sink_drops_reports_the_sinks_reason() {
    common::init();
    // Frames far bigger in total than any arena: a consumer that stops
    // taking them for 3 s outlasts the sink's 300 ms timeout and is dropped.
    let case = case(
        "videotestsrc num-buffers=1000 pattern=solid-color ! video/x-raw,format=GRAY8,width=640,height=480,framerate=30/1",
        FAKESINK,
    );
    let dir = SockDir::new("dropped");
    let sock = dir.sock();
    let producer = spawn_producer(&case, &sock, "timeout=300");
    let p = consumer(&case, &sock);
    let obs = p.by_name("obs").expect("obs");
    let n = Arc::new(Mutex::new(0u32));
    obs.static_pad("sink")
        .expect("sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let mut g = lock(&n);
            *g += 1;
            if *g == 3 {
                std::thread::sleep(Duration::from_secs(3));
            }
            gst::PadProbeReturn::Ok
        });
    let run = run_pipeline(&p, Duration::from_secs(60), None);
    drop(p);
    let _ = producer.finish(Duration::from_secs(3));
    drop(dir);
    let e = run
        .error
        .expect("the stalled consumer reached EOS: the sink did not drop it");
    let low = e.to_lowercase();
    assert!(
        !low.contains("went away"),
        "the receiver blames the sink going away while the sink dropped it: {e}"
    );
    assert!(
        [
            "timeout",
            "timed out",
            "took nothing",
            "slow",
            "stalled",
            "300 ms"
        ]
        .iter()
        .any(|k| low.contains(k)),
        "the receiver's error does not give the sink's reason (a stalled consumer, timeout): {e}"
    );
}
