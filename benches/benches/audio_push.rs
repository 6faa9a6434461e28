//! Time spent in an audio callback's push, for 64-, 256- and 1024-frame
//! periods of 48 kHz stereo f32: the typed ring (`Producer<f32>::push_slice`,
//! as `cpal_typed` does) and the frame stream (reclaim, lease, copy, send, as
//! `cpal_capture` does), with a reader thread that sleeps between periods, so
//! each push also pays the wake-up write. Beside them, in the same run, a
//! bare `eventfd` write to a sleeping reader: the floor of "wake the reader".
//! p50, p99, p99.9 and worst case over every push.
//!
//! ```text
//! cargo bench -p shmring-benches --bench audio_push [-- --smoke]
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use shmring::frames::{self, FrameConfig, FrameMeta, Received};
use shmring::{channel, Config};
use shmring_benches::{machine, percentile, write_report, Table};

/// Gap between periods: long enough that the reader is asleep at each push.
const GAP: Duration = Duration::from_micros(300);

fn pace(next: &mut Instant) {
    *next += GAP;
    while Instant::now() < *next {
        std::hint::spin_loop();
    }
}

fn typed(period: usize, n: usize) -> Vec<u64> {
    let (mut tx, mut rx) = channel::pair::<f32>(&Config::new(1 << 16)).expect("ring");
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0f32; 4096];
        let mut got = 0usize;
        while got < period * n {
            match rx.pop_slice_blocking(&mut buf, Some(Duration::from_secs(5))) {
                Ok(k) => got += k,
                Err(e) => panic!("reader: {e}"),
            }
        }
        got
    });
    let samples = vec![0.25f32; period];
    let mut times = Vec::with_capacity(n);
    let mut next = Instant::now();
    for _ in 0..n {
        pace(&mut next);
        let t = Instant::now();
        let k = tx.push_slice(&samples).expect("push");
        times.push(t.elapsed().as_nanos() as u64);
        assert_eq!(k, period, "the reader keeps up");
    }
    assert_eq!(
        reader.join().expect("reader"),
        period * n,
        "every sample arrived"
    );
    times
}

fn frame_stream(period: usize, n: usize) -> Vec<u64> {
    let bytes = period * 4;
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(32, bytes)).expect("frames");
    let reader = std::thread::spawn(move || {
        let mut got = 0usize;
        while got < n {
            match rx.recv(Some(Duration::from_secs(5))) {
                Ok(Received::Frame(f)) => {
                    assert_eq!(f.bytes().len(), bytes);
                    got += 1;
                }
                Ok(_) => {}
                Err(e) => panic!("reader: {e}"),
            }
        }
        got
    });
    let data = vec![0x3eu8; bytes];
    let meta = FrameMeta::default();
    let mut times = Vec::with_capacity(n);
    let mut next = Instant::now();
    for _ in 0..n {
        pace(&mut next);
        let t = Instant::now();
        tx.reclaim(|_| {}).expect("reclaim");
        let mut lease = tx.try_lease().expect("a free slot: the reader keeps up");
        lease.as_mut()[..bytes].copy_from_slice(&data);
        tx.send_lease(lease, bytes, &meta).expect("send");
        times.push(t.elapsed().as_nanos() as u64);
    }
    assert_eq!(reader.join().expect("reader"), n, "every period arrived");
    times
}

fn bare_eventfd(n: usize) -> Vec<u64> {
    // SAFETY: eventfd has no pointer arguments; we own the new fd.
    let fd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, 0)) };
    let raw = fd.as_raw_fd();
    let reader = std::thread::spawn(move || {
        let mut v = 0u64;
        let mut total = 0u64;
        while total < n as u64 {
            // SAFETY: reads 8 bytes into a live local from our eventfd.
            let r = unsafe { libc::read(raw, (&mut v as *mut u64).cast(), 8) };
            assert_eq!(r, 8, "eventfd read");
            total += v;
        }
    });
    let mut times = Vec::with_capacity(n);
    let mut next = Instant::now();
    for _ in 0..n {
        pace(&mut next);
        let one = 1u64;
        let t = Instant::now();
        // SAFETY: writes 8 bytes from a live local to our eventfd.
        let r = unsafe { libc::write(raw, (&one as *const u64).cast(), 8) };
        times.push(t.elapsed().as_nanos() as u64);
        assert_eq!(r, 8, "eventfd write");
    }
    reader.join().expect("reader");
    drop(fd);
    times
}

fn us(ns: u64) -> String {
    format!("{:.2} µs", ns as f64 / 1000.0)
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let n = if smoke { 300 } else { 10_000 };
    let mut out = format!(
        "Audio callback push time, 48 kHz stereo f32, reader thread asleep at each push, {n} pushes each{}\n\nMachine: {}\n\n",
        if smoke { " (SMOKE)" } else { "" },
        machine()
    );
    let mut t = Table::new(&["path", "period", "p50", "p99", "p99.9", "worst"]);
    let mut row = |name: &str, period: &str, mut v: Vec<u64>| {
        v.sort_unstable();
        t.row(&[
            name.to_string(),
            period.to_string(),
            us(percentile(&v, 50.0)),
            us(percentile(&v, 99.0)),
            us(percentile(&v, 99.9)),
            us(*v.last().unwrap_or(&0)),
        ]);
    };
    row(
        "bare eventfd write (wake a sleeping reader)",
        "-",
        bare_eventfd(n),
    );
    for frames in [64usize, 256, 1024] {
        let period = frames * 2;
        row(
            "typed ring push_slice",
            &format!("{frames} frames"),
            typed(period, n),
        );
        row(
            "frame stream lease+copy+send",
            &format!("{frames} frames"),
            frame_stream(period, n),
        );
    }
    out.push_str(t.as_str());
    out.push_str("\nA period lasts 1333 µs (64 frames) to 21333 µs (1024 frames) at 48 kHz.\n");
    print!("{out}");
    write_report("bench-audio.md", &out);
}
