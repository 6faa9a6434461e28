//! Two real processes streaming u64 items through a shmring channel.
//!
//! The parent binds a Unix socket path, starts a copy of itself as the
//! producer, accepts it (the fds of the channel cross the socket with
//! `SCM_RIGHTS`), and consumes. Both sides fold every item into an
//! order-sensitive checksum and print it with their rate; the parent checks
//! that the two checksums match and that every item arrived in order.
//!
//! ```text
//! stream_demo [--items N] [--capacity N] [--batch N] [--pipe|--eventfd] [--socket PATH]
//! ```

use shmring_examples::{checksum_step, CHECKSUM_INIT};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use shmring::handshake::{self, ListenOptions, Listener};
use shmring::{Config, Error, SignalKind};

const TYPE_NAME: &str = "shmring-stream-demo-u64";
const TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    items: u64,
    capacity: usize,
    batch: usize,
    signal: SignalKind,
    socket: Option<PathBuf>,
    producer: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        items: 5_000_000,
        capacity: 16_384,
        batch: 256,
        signal: SignalKind::default(),
        socket: None,
        producer: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--items" => a.items = num("--items")?,
            "--capacity" => a.capacity = num("--capacity")? as usize,
            "--batch" => a.batch = (num("--batch")? as usize).max(1),
            "--pipe" => a.signal = SignalKind::Pipe,
            "--eventfd" => a.signal = SignalKind::EventFd,
            "--socket" => a.socket = Some(it.next().ok_or("--socket needs a path")?.into()),
            "--producer" => a.producer = true,
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stream_demo: {e}");
            eprintln!(
                "usage: stream_demo [--items N] [--capacity N] [--batch N] [--pipe|--eventfd] [--socket PATH]"
            );
            return ExitCode::from(2);
        }
    };
    let result = if args.producer {
        producer(&args)
    } else {
        consumer(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let role = if args.producer {
                "producer"
            } else {
                "consumer"
            };
            eprintln!("stream_demo ({role}): {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(args: &Args) -> Config {
    Config::new(args.capacity)
        .type_name(TYPE_NAME)
        .signal(args.signal)
        .handshake_timeout(TIMEOUT)
}

/// The child: connects, pushes `0..items` in chunks, prints its checksum.
fn producer(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let path = args.socket.as_ref().ok_or("--producer needs --socket")?;
    let mut tx = handshake::connect_producer::<u64>(path, &config(args))?;
    let start = Instant::now();
    let mut sum = CHECKSUM_INIT;
    let mut next = 0u64;
    while next < args.items {
        let want = (args.items - next).min(args.batch as u64) as usize;
        let mut chunk = tx.write_chunk(want)?;
        if chunk.is_empty() {
            tx.wait_writable(Some(TIMEOUT))?;
            continue;
        }
        // Copies into the slots (the consumer is another process).
        chunk.fill_from_iter((next..).inspect(|&x| sum = checksum_step(sum, x)));
        next += chunk.len() as u64;
        chunk.commit_all();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "producer pid {}: sent     {} items in {:.3} s, {:>7.1} M items/s, checksum {sum:#018x}, wake-ups sent {}",
        std::process::id(),
        args.items,
        secs,
        args.items as f64 / secs / 1e6,
        tx.stats().wakeups_sent
    );
    println!("CHECKSUM {sum:#018x}");
    Ok(())
}

/// The parent: binds, spawns the producer, consumes and checks.
fn consumer(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let path = args.socket.clone().unwrap_or_else(|| {
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        dir.join(format!("shmring-demo-{}.sock", std::process::id()))
    });
    let listener = Listener::bind(&path, &ListenOptions::default())?;
    println!(
        "consumer pid {}: listening on {} ({:?} wake-ups, capacity {}, batch {})",
        std::process::id(),
        path.display(),
        args.signal,
        args.capacity,
        args.batch
    );

    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--producer")
        .arg("--socket")
        .arg(&path)
        .args(["--items", &args.items.to_string()])
        .args(["--capacity", &args.capacity.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .stdout(Stdio::piped());
    match args.signal {
        SignalKind::Pipe => {
            cmd.arg("--pipe");
        }
        SignalKind::EventFd => {
            cmd.arg("--eventfd");
        }
        _ => {}
    }
    let mut child = cmd.spawn()?;
    let mut rx = match listener.accept_consumer::<u64>(&config(args)) {
        Ok(rx) => rx,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.into());
        }
    };

    let mut start = None;
    let mut sum = CHECKSUM_INIT;
    let mut expected = 0u64;
    loop {
        let chunk = rx.read_chunk(args.batch.max(4096))?;
        if chunk.is_empty() {
            match rx.wait_readable(Some(TIMEOUT)) {
                Ok(()) => continue,
                Err(Error::Disconnected | Error::PeerDied) => break,
                Err(e) => return Err(e.into()),
            }
        }
        start.get_or_insert_with(Instant::now);
        // Copies out of the slots: the producer is another process.
        for x in chunk.iter() {
            if x != expected {
                return Err(format!("item {expected} arrived as {x}").into());
            }
            sum = checksum_step(sum, x);
            expected += 1;
        }
        chunk.release_all();
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());

    let mut theirs = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            match line.strip_prefix("CHECKSUM ") {
                Some(h) => theirs = u64::from_str_radix(h.trim_start_matches("0x"), 16).ok(),
                None => println!("{line}"),
            }
        }
    }
    let status = child.wait()?;
    println!(
        "consumer pid {}: received {} items in {:.3} s, {:>7.1} M items/s, checksum {sum:#018x}, wake-ups sent {}",
        std::process::id(),
        expected,
        secs,
        expected as f64 / secs.max(1e-9) / 1e6,
        rx.stats().wakeups_sent
    );
    if !status.success() {
        return Err(format!("producer exited with {status}").into());
    }
    if expected != args.items {
        return Err(format!("expected {} items, received {expected}", args.items).into());
    }
    match theirs {
        Some(t) if t == sum => {
            println!("checksums match: {sum:#018x}");
            Ok(())
        }
        Some(t) => {
            Err(format!("checksum mismatch: producer {t:#018x}, consumer {sum:#018x}").into())
        }
        None => Err("producer printed no checksum".into()),
    }
}
