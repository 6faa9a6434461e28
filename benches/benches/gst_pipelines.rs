//! GStreamer between two processes, side by side in one run: shmringsink →
//! shmringsrc vs GStreamer's own shmsink → shmsrc vs the same pipeline in one
//! process. 1920x1080 RGBA `videotestsrc pattern=black` into `fakesink
//! sync=false`: frames/s (wall clock from the receiving process's start to
//! its end) and CPU seconds per 1000 frames (the receiving process whole,
//! startup included, and the sender over the same time; see `run`). The
//! paths take turns, round after round; a ratio is the median of the ratios
//! within a round. Then small audio buffers (64 samples S16LE stereo 48 kHz):
//! buffers/s.
//!
//! ```text
//! cargo build --release -p gst-plugin-shmring
//! cargo bench -p shmring-benches --bench gst_pipelines [-- --smoke]
//! SHMRING_BENCH_PARTS=video SHMRING_BENCH_SINK_PROPS=spin=0 cargo bench ...   # experiments
//! SHMRING_BENCH_VARIANT="shmringsink spin=0 ! shmringsrc spin=10" cargo bench ...  # A/B
//! SHMRING_BENCH_BASELINE=/other/checkout/target/release cargo bench ...  # A/B of two builds
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmring_benches::{machine, median, write_report, Table};

#[path = "common/wake_cost.rs"]
mod wake_cost;

const VIDEO: &str =
    "videotestsrc pattern=black num-buffers={N} ! video/x-raw,format=RGBA,width=1920,height=1080,framerate=30/1";
const AUDIO_LIVE: &str = "audiotestsrc is-live=true num-buffers={N} samplesperbuffer=64 ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved";
const AUDIO: &str = "audiotestsrc num-buffers={N} samplesperbuffer=64 ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved";
const SMALL_VIDEO: &str =
    "videotestsrc pattern=black num-buffers={N} ! video/x-raw,format=RGBA,width=64,height=64,framerate=30/1";
/// An encoded stream: JPEG of 1280x720 SMPTE bars (~40 KB a frame), which
/// downstream parses, so shmringsrc copies it unless `trusted=true`.
const ENCODED: &str = "videotestsrc pattern=smpte num-buffers={N} ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! jpegenc";

fn plugin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SHMRING_GST_PLUGIN_DIR") {
        return d.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    target.join("release")
}

/// A pipeline prefix that runs its process on CPU 0 only.
const ON_CPU0: &str = "@cpu0 ";
/// A pipeline prefix that loads the plugin from `SHMRING_BENCH_BASELINE`
/// (another build, e.g. of an older commit) instead: its row is measured in
/// the same run as the current build's.
const BASELINE: &str = "@baseline ";

/// The plugin directory of a baseline build to compare with, if any
/// (`SHMRING_BENCH_BASELINE=/path/to/target/release`).
fn baseline_dir() -> Option<PathBuf> {
    std::env::var_os("SHMRING_BENCH_BASELINE").map(PathBuf::from)
}

/// Starts `gst-launch-1.0 -q pipeline`, its stderr going to `log`; on CPU 0
/// only if the pipeline starts with [`ON_CPU0`].
fn launch(pipeline: &str, log: &std::path::Path) -> Child {
    use std::os::unix::process::CommandExt;
    let (pin, pipeline) = match pipeline.strip_prefix(ON_CPU0) {
        Some(rest) => (true, rest),
        None => (false, pipeline),
    };
    let (dir, pipeline) = match (pipeline.strip_prefix(BASELINE), baseline_dir()) {
        (Some(rest), Some(dir)) => (dir, rest),
        _ => (plugin_dir(), pipeline),
    };
    // One registry cache per plugin build, so that alternating builds never
    // rescan plugins at startup.
    let registry = std::env::temp_dir().join(format!(
        "shmring-bench-registry-{:x}.bin",
        dir.display()
            .to_string()
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
    ));
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q")
        .args(pipeline.split_whitespace())
        .env("GST_PLUGIN_PATH", dir)
        .env("GST_REGISTRY", registry)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    if pin {
        // SAFETY: between fork and exec only sched_setaffinity runs (async-
        // signal-safe: a plain syscall on a local set, no allocation).
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn().expect("gst-launch-1.0")
}

fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Waits until the sender's socket exists at `path` (10 s at most), then
/// 300 ms more: GStreamer's shmsink can stall a client that connects while
/// it is still starting, so every sender gets time to settle.
fn wait_for_sender(path: &str) {
    let t0 = Instant::now();
    while !std::path::Path::new(path).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no socket at {path}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(300));
}

/// CPU time of every thread of a running process so far (nanoseconds
/// resolution, from the scheduler's `/proc/PID/task/*/schedstat`).
fn process_cpu(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// Runs the pipelines (one process, or sender then receivers): wall time
/// from the receivers' start to their end, and CPU over the same stretch:
/// every receiver whole (startup included, as the one-process pipeline's),
/// and the senders' from the receivers' start to their end (a sender's
/// startup and its wait for a consumer are left out: each path pays for one
/// process startup, as a consumer joining a running sender does). The
/// receivers start once the sender's socket (`wait_for`) exists, as a user
/// would start them. A receiver that takes over 60 s fails the bench, or is
/// reported as stalled (`None`) for GStreamer's shmsrc.
fn run(pipelines: &[String], wait_for: Option<&str>) -> Option<(Duration, Duration)> {
    if let Some(path) = wait_for {
        let _ = std::fs::remove_file(path);
    }
    let mut cpu0 = children_cpu();
    let mut sender_cpu0 = Duration::ZERO;
    let mut start = Instant::now();
    let mut children: Vec<(Child, std::path::PathBuf)> = Vec::new();
    for (i, p) in pipelines.iter().enumerate() {
        if i > 0 {
            if let Some(path) = wait_for {
                // The clock starts with the receiver (the sender waits for it).
                wait_for_sender(path);
                sender_cpu0 = process_cpu(children[0].0.id());
                cpu0 = children_cpu();
                start = Instant::now();
            }
        }
        let log =
            std::env::temp_dir().join(format!("shmring-gstbench-{}-{i}.log", std::process::id()));
        children.push((launch(p, &log), log));
    }
    // The receivers (all but the first of several pipelines) stop after N
    // buffers: the measurement ends when the last one has. The sender
    // produces without end (GStreamer's shmsink drops what its clients have
    // not read yet when it reaches EOS, so a finite sender would lose
    // frames) and is killed then.
    // GStreamer's shmsrc stalls now and then (1 run in 3 here): give up on
    // it sooner and retry.
    let patience = if pipelines.iter().any(|p| p.contains("shmsrc ")) {
        20
    } else {
        60
    };
    let deadline = start + Duration::from_secs(patience);
    let senders = usize::from(children.len() > 1);
    let receivers = children.split_off(senders);
    let mut status = Some(std::process::ExitStatus::default());
    let mut err = String::new();
    for (mut receiver, log) in receivers {
        let s = loop {
            match receiver.try_wait().expect("wait") {
                Some(s) => break Some(s),
                None if Instant::now() > deadline => {
                    let _ = receiver.kill();
                    let _ = receiver.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        if s.is_none_or(|s| !s.success()) && status.is_some_and(|s| s.success()) {
            status = s;
            err = std::fs::read_to_string(&log).unwrap_or_default();
        }
        let _ = std::fs::remove_file(&log);
    }
    let elapsed = start.elapsed();
    // Receivers are reaped (in RUSAGE_CHILDREN); the sender still runs.
    let mut cpu = children_cpu() - cpu0;
    for (mut sender, log) in children {
        cpu += process_cpu(sender.id()).saturating_sub(sender_cpu0);
        let _ = sender.kill();
        let _ = sender.wait();
        let _ = std::fs::remove_file(&log);
    }
    let receiver = pipelines.last().expect("a pipeline");
    match status {
        // A baseline build may not handle a stream at all (an older build
        // and an encoded stream): reported as such, not fatal.
        Some(s) if !s.success() && receiver.starts_with(BASELINE) => {
            eprintln!("baseline failed: {receiver}: {err}");
            return None;
        }
        Some(s) => assert!(s.success(), "gst-launch failed: {receiver}: {err}"),
        // GStreamer's shmsink → shmsrc can stall (its poll thread dies with
        // EBUSY under a fast stream of small buffers): reported, not fatal.
        None if receiver.contains("shmsrc ") || receiver.starts_with(BASELINE) => {
            eprintln!("stalled: did not finish in {patience} s: {receiver}");
            return None;
        }
        None => panic!("gst-launch did not finish in 60 s: {receiver}"),
    }
    Some((elapsed, cpu))
}

/// Runs live pipelines (one process, or sender then receiver) whose
/// receiver stops after `n` buffers at the source's pace: the CPU every
/// process spends per second in `window`, taken after `warmup` from the
/// receiver's start (startup and the first buffers left out: only the steady
/// stream). `None` if the receiver did not get its `n` buffers in time.
fn run_live(
    pipelines: &[String],
    wait_for: Option<&str>,
    warmup: Duration,
    window: Duration,
) -> Option<f64> {
    if let Some(path) = wait_for {
        let _ = std::fs::remove_file(path);
    }
    let mut children = Vec::new();
    for (i, p) in pipelines.iter().enumerate() {
        if let (true, Some(path)) = (i > 0, wait_for) {
            wait_for_sender(path);
        }
        let log =
            std::env::temp_dir().join(format!("shmring-gstbench-{}-{i}.log", std::process::id()));
        children.push((launch(p, &log), log));
    }
    let cpu = |children: &[(Child, std::path::PathBuf)]| -> Duration {
        children.iter().map(|(c, _)| process_cpu(c.id())).sum()
    };
    std::thread::sleep(warmup);
    let cpu0 = cpu(&children);
    std::thread::sleep(window);
    let used = cpu(&children) - cpu0;
    let receiver = children.len() - 1;
    let deadline = Instant::now() + Duration::from_secs(20);
    let finished = loop {
        match children[receiver].0.try_wait().expect("wait") {
            Some(s) => break s.success(),
            None if Instant::now() > deadline => break false,
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    for (mut c, log) in children {
        let _ = c.kill();
        let _ = c.wait();
        let _ = std::fs::remove_file(&log);
    }
    finished.then(|| used.as_secs_f64() / window.as_secs_f64())
}

/// Extra shmringsink properties for experiments (`SHMRING_BENCH_SINK_PROPS`,
/// e.g. `spin=0`), applied to the two-process cases; none by default.
fn extra_sink_props() -> String {
    std::env::var("SHMRING_BENCH_SINK_PROPS").unwrap_or_default()
}

/// Properties of a second shmring path to compare with the first
/// (`SHMRING_BENCH_VARIANT`, e.g. `shmringsink spin=0 ! shmringsrc spin=10`:
/// the part before `!` goes to the sink, the rest to the src); none by
/// default.
fn variant() -> Option<(String, String)> {
    let v = std::env::var("SHMRING_BENCH_VARIANT").ok()?;
    let (sink, src) = v.split_once('!').unwrap_or((&v, ""));
    let strip = |s: &str, name: &str| s.trim().trim_start_matches(name).trim().to_string();
    Some((strip(sink, "shmringsink"), strip(src, "shmringsrc")))
}

/// Whether to run a part of the runner: `SHMRING_BENCH_PARTS` lists them
/// (video, audio, small-video, encoded, audio-live, fan-out), all by default.
fn part(name: &str) -> bool {
    std::env::var("SHMRING_BENCH_PARTS").map_or(true, |v| v.split(',').any(|p| p == name))
}

fn sock(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("shmring-gstbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join(format!("{tag}.sock"));
    let _ = std::fs::remove_file(&p);
    p.display().to_string()
}

fn cases(
    src: &str,
    caps_after_shmsrc: &str,
    n: u64,
    shm_size: u64,
) -> Vec<(&'static str, Vec<String>, Option<String>)> {
    cases_with(src, caps_after_shmsrc, n, shm_size, false)
}

/// [`cases`], and with `trusted` a row where shmringsrc trusts the sink
/// (zero copy for parsed formats too).
fn cases_with(
    src: &str,
    caps_after_shmsrc: &str,
    n: u64,
    shm_size: u64,
    trusted: bool,
) -> Vec<(&'static str, Vec<String>, Option<String>)> {
    let finite = src.replace("{N}", &n.to_string());
    let endless = src.replace("{N}", "-1");
    let (a, b) = (sock("shmring"), sock("shm"));
    let mut cases = vec![
        (
            "one process",
            vec![format!("{finite} ! fakesink sync=false")],
            None,
        ),
        // The same with a thread boundary: two buffers in flight at least,
        // as across processes (for 1080p that alone costs CPU caches).
        (
            "one process, queue (2 threads)",
            vec![format!("{finite} ! queue ! fakesink sync=false")],
            None,
        ),
        (
            "shmringsink → shmringsrc",
            vec![
                format!(
                    "{endless} ! shmringsink socket-path={a} sync=false {}",
                    extra_sink_props()
                ),
                format!("shmringsrc socket-path={a} num-buffers={n} ! fakesink sync=false"),
            ],
            Some(a.clone()),
        ),
    ];
    // Where the cost of crossing processes comes from: the same pair with
    // both processes on one CPU hands each frame over with a context switch
    // instead of waking the other CPU (on a VM, an IPI and a halted vCPU to
    // resume, tens of microseconds, while the sender waits for the slot).
    let c = sock("shmring-cpu0");
    cases.push((
        "shmringsink → shmringsrc, both on CPU 0",
        vec![
            format!(
                "{ON_CPU0}{endless} ! shmringsink socket-path={c} sync=false {}",
                extra_sink_props()
            ),
            format!("{ON_CPU0}shmringsrc socket-path={c} num-buffers={n} ! fakesink sync=false"),
        ],
        Some(c),
    ));
    if baseline_dir().is_some() {
        let b = sock("shmring-baseline");
        cases.push((
            "shmringsink → shmringsrc (SHMRING_BENCH_BASELINE build)",
            vec![
                format!("{BASELINE}{endless} ! shmringsink socket-path={b} sync=false"),
                format!(
                    "{BASELINE}shmringsrc socket-path={b} num-buffers={n} ! fakesink sync=false"
                ),
            ],
            Some(b),
        ));
    }
    if trusted {
        let t = sock("shmring-trusted");
        cases.push((
            "shmringsink → shmringsrc trusted=true",
            vec![
                format!(
                    "{endless} ! shmringsink socket-path={t} sync=false {}",
                    extra_sink_props()
                ),
                format!(
                    "shmringsrc socket-path={t} trusted=true num-buffers={n} ! fakesink sync=false"
                ),
            ],
            Some(t),
        ));
    }
    if let Some((sink, src)) = variant() {
        let v = sock("shmring-variant");
        cases.push((
            "shmringsink → shmringsrc (SHMRING_BENCH_VARIANT)",
            vec![
                format!("{endless} ! shmringsink socket-path={v} sync=false {sink}"),
                format!("shmringsrc socket-path={v} num-buffers={n} {src} ! fakesink sync=false"),
            ],
            Some(v),
        ));
    }
    cases.push(
        (
            "shmsink → shmsrc",
            vec![
                format!("{endless} ! shmsink socket-path={b} shm-size={shm_size} wait-for-connection=true sync=false"),
                format!("shmsrc socket-path={b} num-buffers={n} ! {caps_after_shmsrc} ! fakesink sync=false"),
            ],
            Some(b.clone()),
        ),
    );
    cases
}

/// A case's runs: per round, its rate (units/s) and CPU per unit (s), NaN
/// for a round in which it stalled every try.
struct Measured {
    name: String,
    rate: Vec<f64>,
    cpu: Vec<f64>,
}

impl Measured {
    /// Median rate over the rounds it finished.
    fn rate(&self) -> f64 {
        median(&mut finite(&self.rate))
    }

    /// Median CPU per unit over the rounds it finished.
    fn cpu(&self) -> f64 {
        median(&mut finite(&self.cpu))
    }

    /// Median over rounds of this case's rate and CPU divided by `other`'s in
    /// the same round: the two ran minutes apart at most, seconds usually,
    /// so drift of the machine between rounds cancels out.
    fn vs(&self, other: &Measured) -> (f64, f64) {
        let ratios = |a: &[f64], b: &[f64]| {
            median(&mut finite(
                &a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>(),
            ))
        };
        (
            ratios(&self.rate, &other.rate),
            ratios(&self.cpu, &other.cpu),
        )
    }
}

/// The finite values of `v`.
fn finite(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| x.is_finite()).collect()
}

/// One sender, `consumers` receivers of `n` frames each: shmringsink with
/// its default slow-consumer policy (drop: the fastest consumer sets the
/// pace) and with `block` (every consumer gets every frame, as with
/// shmsink), and GStreamer's shmsink with as many shmsrc.
fn fan_out_cases(consumers: usize, n: u64) -> Vec<(&'static str, Vec<String>, Option<String>)> {
    let endless = VIDEO.replace("{N}", "-1");
    let caps = "video/x-raw,format=RGBA,width=1920,height=1080,framerate=30/1";
    let (a, b, c) = (sock("fan-drop"), sock("fan-block"), sock("fan-shm"));
    let with = |sender: String, receiver: String| {
        std::iter::once(sender)
            .chain(std::iter::repeat_n(receiver, consumers))
            .collect::<Vec<_>>()
    };
    vec![
        (
            "shmringsink → shmringsrc (slow-consumer=drop)",
            with(
                format!("{endless} ! shmringsink socket-path={a} sync=false"),
                format!("shmringsrc socket-path={a} num-buffers={n} ! fakesink sync=false"),
            ),
            Some(a.clone()),
        ),
        (
            "shmringsink → shmringsrc (slow-consumer=block)",
            with(
                format!("{endless} ! shmringsink socket-path={b} slow-consumer=block sync=false"),
                format!("shmringsrc socket-path={b} num-buffers={n} ! fakesink sync=false"),
            ),
            Some(b.clone()),
        ),
        (
            "shmsink → shmsrc",
            with(
                format!("{endless} ! shmsink socket-path={c} shm-size={} wait-for-connection=true sync=false", 8_294_400 * 20),
                format!("shmsrc socket-path={c} num-buffers={n} ! {caps} ! fakesink sync=false"),
            ),
            Some(c.clone()),
        ),
    ]
}

/// Fan-out results: per consumers count, each path's frames/s per consumer
/// and CPU per 1000 frames delivered (all processes), with ratios to shmsink.
fn fan_out_table(rows: &[(usize, Vec<Measured>)]) -> String {
    let mut t = Table::new(&[
        "consumers",
        "path",
        "frames/s per consumer",
        "CPU s / 1000 frames delivered",
        "rate vs shmsink",
        "CPU vs shmsink",
    ]);
    for (consumers, results) in rows {
        let shm = &results[results.len() - 1];
        for m in results {
            let (rate_shm, cpu_shm) = m.vs(shm);
            t.row(&[
                consumers.to_string(),
                m.name.clone(),
                fmt(m.rate(), 0, ""),
                fmt(m.cpu() * 1000.0, 2, ""),
                fmt(rate_shm, 2, "x"),
                fmt(cpu_shm, 2, "x"),
            ]);
        }
    }
    t.as_str().to_string()
}

/// Runs every case once per round, `rounds` rounds, the cases taking turns
/// (so a case and the one it is compared with run seconds apart, not
/// minutes: this VM drifts by tens of percent within minutes). A stalled
/// run is retried up to 3 times; the name counts stalled tries.
fn measure(
    cases: &[(&'static str, Vec<String>, Option<String>)],
    units: u64,
    rounds: usize,
) -> Vec<Measured> {
    let mut out: Vec<Measured> = cases
        .iter()
        .map(|(name, _, _)| Measured {
            name: name.to_string(),
            rate: Vec::new(),
            cpu: Vec::new(),
        })
        .collect();
    let mut stalls = vec![0; cases.len()];
    for _ in 0..rounds {
        for (i, (_, pipes, wait_for)) in cases.iter().enumerate() {
            let r = (0..3).find_map(|_| {
                let r = run(pipes, wait_for.as_deref());
                stalls[i] += usize::from(r.is_none());
                r
            });
            let (rate, cpu) = r.map_or((f64::NAN, f64::NAN), |(wall, c)| {
                (
                    units as f64 / wall.as_secs_f64(),
                    c.as_secs_f64() / units as f64,
                )
            });
            out[i].rate.push(rate);
            out[i].cpu.push(cpu);
        }
    }
    for (m, n) in out.iter_mut().zip(stalls) {
        if m.rate.iter().all(|r| r.is_nan()) {
            m.name.push_str(" (stalled)");
        } else if n > 0 {
            m.name.push_str(&format!(" ({n} stalled runs retried)"));
        }
    }
    out
}

/// What one hand-over to a sleeping process costs on this machine, next to
/// the one-process pipeline's CPU per frame: the part of the CPU budget
/// that no two-process design with a sleeping consumer can save.
fn wake_floor(results: &[Measured], n: u32) -> String {
    let Some(shmring) = results
        .iter()
        .find(|m| m.name == "shmringsink → shmringsrc")
    else {
        return String::new();
    };
    let period = Duration::from_secs_f64(1.0 / shmring.rate());
    let Some(w) = wake_cost::measure(period, n) else {
        return "\nWake-up floor: a wake-up got lost (1 s), no figure.\n".into();
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let per_frame = results[0].cpu();
    format!(
        "\nWake-up floor (bare eventfd between two threads, one wake-up every {:.0} µs, as every frame needs): \
         the waker's write {:.1} µs and the sleeper's wake-up {:.1} µs of CPU = {:.1}% of the one-process \
         pipeline's CPU per frame ({:.0} µs); {:.1} µs until the sleeper runs (median).\n",
        us(period),
        us(w.write),
        us(w.sleeper_cpu),
        100.0 * (w.write + w.sleeper_cpu).as_secs_f64() / per_frame,
        per_frame * 1e6,
        us(w.latency),
    )
}

/// `x` with `decimals`, or "stalled" for NaN.
fn fmt(x: f64, decimals: usize, suffix: &str) -> String {
    if x.is_nan() {
        "stalled".to_string()
    } else {
        format!("{x:.decimals$}{suffix}")
    }
}

/// A table of `results` (one process first, the same with a queue second,
/// shmsink last) with ratios.
fn table(results: &[Measured], unit: &str, cpu_unit: &str, cpu_scale: f64) -> String {
    let mut t = Table::new(&[
        "path",
        &format!("{unit}/s"),
        &format!("CPU {cpu_unit}"),
        "rate vs one process",
        "CPU vs one process",
        "CPU vs queue",
        "rate vs shmsink",
        "CPU vs shmsink",
    ]);
    let (base, queue, shm) = (&results[0], &results[1], &results[results.len() - 1]);
    for m in results {
        let (rate_base, cpu_base) = m.vs(base);
        let (_, cpu_queue) = m.vs(queue);
        let (rate_shm, cpu_shm) = m.vs(shm);
        t.row(&[
            m.name.clone(),
            fmt(m.rate(), 0, ""),
            fmt(m.cpu() * cpu_scale, 2, ""),
            fmt(rate_base, 2, "x"),
            fmt(cpu_base, 2, "x"),
            fmt(cpu_queue, 2, "x"),
            fmt(rate_shm, 2, "x"),
            fmt(cpu_shm, 2, "x"),
        ]);
    }
    t.as_str().to_string()
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    // Rounds: 5 for the video comparison (the budgets), 3 for the rest.
    let (frames, buffers, fan_frames, reps, others) = if smoke {
        (30, 300, 30, 1, 1)
    } else {
        (3000, 100_000, 1000, 5, 3)
    };
    let mut out = format!(
        "GStreamer across processes, {reps} round(s) for video, {others} for the rest, the paths taking turns in each; \
         rates and CPU: medians over rounds; ratios: medians of the ratios within a round{}\n\nMachine: {}\n\n",
        if smoke { " (SMOKE)" } else { "" },
        machine()
    );
    if let Some((sink, src)) = variant() {
        out.push_str(&format!(
            "SHMRING_BENCH_VARIANT: shmringsink {sink} ! shmringsrc {src}\n\n"
        ));
    }

    let mut printed = 0;
    let mut flush = |out: &String| {
        print!("{}", &out[printed..]);
        printed = out.len();
    };
    flush(&out);
    if part("video") {
        out.push_str(&format!(
            "1920x1080 RGBA videotestsrc pattern=black, {frames} frames → fakesink sync=false\n\n"
        ));
        // With a trusted=true row: raw video is zero copy in both modes, so
        // the two shmring rows should match.
        let video = cases_with(
            VIDEO,
            "video/x-raw,format=RGBA,width=1920,height=1080,framerate=30/1",
            frames,
            // 20 frames: with 6 GStreamer's shmsink stalls in 2 runs of 3 here.
            8_294_400 * 20,
            true,
        );
        let results = measure(&video, frames, reps);
        out.push_str(&table(&results, "frames", "s / 1000 frames", 1000.0));
        out.push_str(&wake_floor(&results, if smoke { 30 } else { 3000 }));
        flush(&out);
    }

    if part("audio") {
        out.push_str(&format!(
        "\nAudio, 64-sample S16LE stereo 48 kHz buffers, {buffers} buffers → fakesink sync=false\n\n"
    ));
        let audio = cases(
            AUDIO,
            "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved",
            buffers,
            1 << 20,
        );
        out.push_str(&table(
            &measure(&audio, buffers, others),
            "buffers",
            "µs / buffer",
            1e6,
        ));
        flush(&out);
    }
    if part("small-video") {
        let n = if smoke { 300 } else { 100_000 };
        out.push_str(&format!(
            "\n64x64 RGBA videotestsrc pattern=black, {n} frames → fakesink sync=false (per-buffer overhead)\n\n"
        ));
        let small = cases_with(
            SMALL_VIDEO,
            "video/x-raw,format=RGBA,width=64,height=64,framerate=30/1",
            n,
            1 << 20,
            true,
        );
        out.push_str(&table(
            &measure(&small, n, others),
            "frames",
            "µs / frame",
            1e6,
        ));
        flush(&out);
    }
    if part("encoded") {
        let n = if smoke { 30 } else { 600 };
        out.push_str(&format!(
            "\nEncoded: 1280x720 SMPTE bars through jpegenc, {n} frames → fakesink sync=false (the encoder's CPU is in every path)\n\n"
        ));
        let encoded = cases_with(ENCODED, "image/jpeg", n, 16 << 20, true);
        out.push_str(&table(
            &measure(&encoded, n, others),
            "frames",
            "ms / frame",
            1e3,
        ));
        flush(&out);
    }
    if part("audio-live") {
        // 48000 / 64 buffers a second; the receiver stops after 4 s.
        let (per_s, warmup, window) = (750.0, Duration::from_secs(1), Duration::from_secs(2));
        let (warmup, window) = if smoke {
            (Duration::from_millis(200), Duration::from_millis(200))
        } else {
            (warmup, window)
        };
        let n = (per_s * (warmup + window).as_secs_f64()) as u64 + 750;
        out.push_str(&format!(
            "\nReal-time audio: live audiotestsrc, 64-sample S16LE stereo 48 kHz buffers (750/s) → fakesink sync=false; CPU of all processes over {window:?} of steady stream, after {warmup:?} (startup left out), median of {others}\n\n"
        ));
        let live = AUDIO_LIVE.replace("{N}", &n.to_string());
        let endless = AUDIO_LIVE.replace("{N}", "-1");
        let caps = "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved";
        let (a, b) = (sock("live-shmring"), sock("live-shm"));
        let cases: Vec<(&str, Vec<String>, Option<String>)> = vec![
            ("one process", vec![format!("{live} ! fakesink sync=false")], None),
            (
                "shmringsink → shmringsrc",
                vec![
                    format!("{endless} ! shmringsink socket-path={a} sync=false"),
                    format!("shmringsrc socket-path={a} num-buffers={n} ! fakesink sync=false"),
                ],
                Some(a),
            ),
            (
                "shmsink → shmsrc",
                vec![
                    format!("{endless} ! shmsink socket-path={b} shm-size=1048576 wait-for-connection=true sync=false"),
                    format!("shmsrc socket-path={b} num-buffers={n} ! {caps} ! fakesink sync=false"),
                ],
                Some(b),
            ),
        ];
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        for _ in 0..others {
            for (i, (_, pipes, wait_for)) in cases.iter().enumerate() {
                let r = run_live(pipes, wait_for.as_deref(), warmup, window);
                cpu[i].push(r.map_or(f64::NAN, |c| c / per_s));
            }
        }
        let mut t = Table::new(&[
            "path",
            "CPU µs / buffer",
            "CPU vs one process",
            "CPU vs shmsink",
        ]);
        let med: Vec<f64> = cpu.iter().map(|v| median(&mut finite(v))).collect();
        for (i, (name, _, _)) in cases.iter().enumerate() {
            let failed = cpu[i].iter().filter(|c| c.is_nan()).count();
            let name = if failed > 0 {
                format!("{name} ({failed} of {others} runs did not deliver every buffer)")
            } else {
                name.to_string()
            };
            t.row(&[
                name,
                fmt(med[i] * 1e6, 2, ""),
                fmt(med[i] / med[0], 2, "x"),
                fmt(med[i] / med[2], 2, "x"),
            ]);
        }
        out.push_str(t.as_str());
    }
    if part("fan-out") {
        out.push_str(&format!(
        "\nFan-out: 1920x1080 RGBA, one endless sender, N receivers of {fan_frames} frames each (rate: frames/s each receiver got, from the first receiver's start to the last one's end)\n\n"
    ));
        let rows: Vec<_> = [1, 2, 4]
            .into_iter()
            .map(|consumers| {
                let mut r = measure(&fan_out_cases(consumers, fan_frames), fan_frames, others);
                // CPU per frame delivered: `measure` divided by one receiver's frames.
                for m in &mut r {
                    for cpu in &mut m.cpu {
                        *cpu /= consumers as f64;
                    }
                }
                (consumers, r)
            })
            .collect();
        out.push_str(&fan_out_table(&rows));
    }
    out.push_str(
        "\nBudgets (DESIGN.md): shmring ≥ 0.90x the one-process frames/s at 1080p; CPU per buffer ≤ the same \
         pipeline's with a queue (a thread boundary in one process), at every buffer size (\"CPU vs queue\" ≤ 1.00x).\n",
    );
    flush(&out);
    write_report("bench-gst.md", &out);
}
