//! Crash soak: for a while, a long-lived process (this one) streams `u64`
//! items with child processes that it kills with SIGKILL at random moments,
//! alternating roles:
//!
//! * it consumes from a producer child, kills it, and must then deliver every
//!   item the producer committed (the child records its committed count in a
//!   file after each batch), in order, and see the hang-up within a second;
//! * it produces to a consumer child, kills it, and must see the consumer gone
//!   (`Disconnected`) within a second.
//!
//! After every round its own fd count and memory mappings must be back to
//! where they started. It prints the kills survived, the items delivered, the
//! items lost (must be 0) and the leaks (must be 0), and exits non-zero on any
//! failure.
//!
//! ```text
//! soak [--seconds N]        # default 60; `make soak` runs it
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmring::handshake::{self, ListenOptions, Listener};
use shmring::{Config, Error};

const BATCH: usize = 256;

fn config() -> Config {
    Config::new(4096).type_name("shmring-soak-u64")
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--child-producer") => child_producer(&args[2], &args[3]),
        Some("--child-consumer") => child_consumer(&args[2]),
        _ => {
            let seconds = args
                .iter()
                .position(|a| a == "--seconds")
                .and_then(|i| args.get(i + 1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(60);
            soak(seconds)
        }
    };
    if let Err(e) = result {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}

/// Pushes 0, 1, 2, … and records how many are committed after each batch.
fn child_producer(sock: &str, committed: &str) -> Result<(), Box<dyn std::error::Error>> {
    let file = File::create(committed)?;
    let mut tx = handshake::connect_producer::<u64>(sock, &config())?;
    let mut next = 0u64;
    let mut batch = [0u64; BATCH];
    loop {
        for (i, b) in batch.iter_mut().enumerate() {
            *b = next + i as u64;
        }
        match tx.push_all(&batch, Some(Duration::from_secs(5))) {
            Ok(()) => {}
            Err(Error::Disconnected | Error::PeerDied) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        next += BATCH as u64;
        file.write_all_at(&next.to_le_bytes(), 0)?;
    }
}

/// Pops and checks the order until the producer goes away.
fn child_consumer(sock: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::bind(sock, &ListenOptions::default())?;
    let mut rx = listener.accept_consumer::<u64>(&config())?;
    let mut want = 0u64;
    let mut buf = [0u64; BATCH];
    loop {
        match rx.pop_slice_blocking(&mut buf, Some(Duration::from_secs(5))) {
            Ok(n) => {
                for &v in &buf[..n] {
                    if v != want {
                        return Err(format!("item {v}, expected {want}").into());
                    }
                    want += 1;
                }
            }
            Err(Error::Disconnected | Error::PeerDied) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn spawn(args: &[&str]) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
}

/// A child process to SIGKILL `after` it started (by [`Victim::tick`]), or
/// when this is dropped (an early return), so no child outlives its round.
struct Victim {
    child: Child,
    kill_at: Instant,
    killed_at: Option<Instant>,
}

impl Victim {
    fn new(child: Child, after: Duration) -> Self {
        Victim {
            child,
            kill_at: Instant::now() + after,
            killed_at: None,
        }
    }

    /// Kills the child once its time has come; counts the kill.
    fn tick(&mut self, t: &mut Totals) {
        if self.killed_at.is_none() && Instant::now() >= self.kill_at {
            self.kill();
            t.kills += 1;
            self.killed_at = Some(Instant::now());
        }
    }

    fn killed(&self) -> bool {
        self.killed_at.is_some()
    }

    /// Killed more than a second ago: its death should have been seen.
    fn overdue(&self) -> bool {
        self.killed_at
            .is_some_and(|k| k.elapsed() > Duration::from_secs(1))
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        if self.killed_at.is_none() {
            self.kill();
        }
    }
}

#[derive(Default)]
struct Totals {
    rounds: u64,
    kills: u64,
    delivered: u64,
    sent: u64,
    lost: u64,
    leaks: u64,
}

fn soak(seconds: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("shmring-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("soak: {seconds} s, seed {seed:#x}");
    let mut rng = Rng(seed);
    let (fds0, maps0) = (fd_count(), map_count());
    let mut t = Totals::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut failures = Vec::new();
    while Instant::now() < deadline {
        t.rounds += 1;
        let sock = dir.join(format!("r{}.sock", t.rounds));
        let run_ms = rng.between(1, 300);
        let r = if rng.next() % 2 == 0 {
            consume_and_kill(&dir, &sock, run_ms, &mut t)
        } else {
            produce_and_kill(&sock, run_ms, &mut t)
        };
        if let Err(e) = r {
            failures.push(format!("round {}: {e}", t.rounds));
        }
        let _ = std::fs::remove_file(&sock);
        let (fds, maps) = (fd_count(), map_count());
        if fds != fds0 || maps != maps0 {
            t.leaks += 1;
            failures.push(format!(
                "round {}: {fds} fds (baseline {fds0}), {maps} mappings (baseline {maps0})",
                t.rounds
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "soak: {} rounds, {} kills survived, {} items delivered and checked, {} items sent to killed consumers, {} items lost, {} leaks",
        t.rounds, t.kills, t.delivered, t.sent, t.lost, t.leaks
    );
    for f in &failures {
        println!("soak: FAILED {f}");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} failures", failures.len()).into())
    }
}

/// We consume; the producer child is killed; every committed item must
/// arrive, in order, and the hang-up within a second.
fn consume_and_kill(
    dir: &Path,
    sock: &Path,
    run_ms: u64,
    t: &mut Totals,
) -> Result<(), Box<dyn std::error::Error>> {
    let committed: PathBuf = dir.join("committed");
    let _ = std::fs::remove_file(&committed);
    let listener = Listener::bind(sock, &ListenOptions::default())?;
    let child = spawn(&[
        "--child-producer",
        &sock.to_string_lossy(),
        &committed.to_string_lossy(),
    ])?;
    let mut victim = Victim::new(child, Duration::from_millis(run_ms));
    let conn = listener.accept(Some(Duration::from_secs(5)))?;
    let mut rx = conn.serve_consumer::<u64>(&config())?;
    let mut want = 0u64;
    let mut buf = [0u64; BATCH];
    loop {
        victim.tick(t);
        match rx.pop_slice_blocking(&mut buf, Some(Duration::from_millis(20))) {
            Ok(n) => {
                for &v in &buf[..n] {
                    if v != want {
                        return Err(format!("item {v}, expected {want}").into());
                    }
                    want += 1;
                }
            }
            Err(Error::Timeout) => {}
            Err(Error::PeerDied) if victim.killed() => break,
            Err(e) => return Err(format!("consumer: {e}").into()),
        }
        if victim.overdue() {
            return Err("the producer's death not seen within 1 s".into());
        }
    }
    let mut c = [0u8; 8];
    let recorded = File::open(&committed)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(0))?;
            f.read(&mut c)
        })
        .map_or(0, |n| if n == 8 { u64::from_le_bytes(c) } else { 0 });
    t.delivered += want;
    if want < recorded {
        t.lost += recorded - want;
        return Err(format!("{} committed items lost", recorded - want).into());
    }
    Ok(())
}

/// We produce; the consumer child is killed; we must see it gone within a
/// second.
fn produce_and_kill(
    sock: &Path,
    run_ms: u64,
    t: &mut Totals,
) -> Result<(), Box<dyn std::error::Error>> {
    let child = spawn(&["--child-consumer", &sock.to_string_lossy()])?;
    let mut victim = Victim::new(child, Duration::from_millis(run_ms));
    let t0 = Instant::now();
    while !sock.exists() {
        if t0.elapsed() > Duration::from_secs(5) {
            return Err("the consumer child did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut tx = handshake::connect_producer::<u64>(sock, &config())?;
    let mut next = 0u64;
    let mut batch = [0u64; BATCH];
    loop {
        victim.tick(t);
        for (i, b) in batch.iter_mut().enumerate() {
            *b = next + i as u64;
        }
        match tx.push_all(&batch, Some(Duration::from_millis(20))) {
            Ok(()) => next += BATCH as u64,
            Err(Error::Timeout) => {}
            Err(Error::PeerDied) if victim.killed() => break,
            Err(e) => return Err(format!("producer: {e}").into()),
        }
        if victim.overdue() {
            return Err("the consumer's death not seen within 1 s".into());
        }
    }
    t.sent += next;
    Ok(())
}
