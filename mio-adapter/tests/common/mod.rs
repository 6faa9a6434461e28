//! Shared helpers of the process tests: child roles (the test binary re-executes
//! itself with `SHMRING_MIO_CHILD` set and runs only the `child` test), and a
//! mio consumer loop like `examples/src/bin/mio_consumer.rs`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use shmring::handshake::{self, Hello, Role, Welcome, WelcomeInfo};
use shmring::{channel::ChannelFds, Config, SignalKind};
use shmring_mio::{MioListener, Readiness, WakeStats};

pub const ENV_ROLE: &str = "SHMRING_MIO_CHILD";
pub const ENV_ARGS: &str = "SHMRING_MIO_ARGS";

/// Defines the `child` test that runs a child role when the env var is set and
/// does nothing otherwise.
#[macro_export]
macro_rules! child_test {
    () => {
        #[test]
        fn child() {
            common::child_main();
        }
    };
}

/// Tests of one binary run in parallel threads of one process; those that
/// count fds or measure CPU take this lock.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn config(signal: SignalKind, capacity: usize) -> Config {
    Config::new(capacity)
        .type_name("u64-seq")
        .signal(signal)
        .handshake_timeout(Duration::from_secs(10))
}

pub fn signal_name(s: SignalKind) -> &'static str {
    match s {
        SignalKind::EventFd => "eventfd",
        SignalKind::Pipe => "pipe",
        _ => "socket",
    }
}

fn parse_signal(s: &str) -> SignalKind {
    match s {
        "pipe" => SignalKind::Pipe,
        "eventfd" => SignalKind::EventFd,
        _ => SignalKind::Socket,
    }
}

/// A fresh socket path in a private temp dir.
pub fn temp_socket(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "shmring-mio-{}-{}-{}",
        name,
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("s");
    (dir, sock)
}

/// Spawns this test binary as a child running `role` with `args`.
pub fn spawn(role: &str, args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
        .env(ENV_ROLE, role)
        .env(ENV_ARGS, args.join("\u{1f}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Spawns a `bursty` child (the honest producer of `burst_plan(seed, rounds,
/// max_burst)`) that connects to `path` for a ring of `capacity`; returns it
/// and the number of items it will send.
pub fn spawn_bursty(
    path: &Path,
    signal: SignalKind,
    capacity: usize,
    (seed, rounds, max_burst): (u64, usize, u64),
) -> (Child, u64) {
    let total = burst_plan(seed, rounds, max_burst)
        .iter()
        .map(|b| b.0)
        .sum();
    let child = spawn_at(
        "bursty",
        path,
        &[
            signal_name(signal).into(),
            capacity.to_string(),
            seed.to_string(),
            rounds.to_string(),
            max_burst.to_string(),
        ],
    );
    (child, total)
}

/// [`spawn`] with the socket `path` as the first argument.
pub fn spawn_at(role: &str, path: &Path, args: &[String]) -> Child {
    let mut all = vec![path.display().to_string()];
    all.extend_from_slice(args);
    spawn(role, &all)
}

pub fn wait_ok(mut c: Child, what: &str) {
    let st = c.wait().unwrap();
    assert!(st.success(), "{what} exited with {st}");
}

/// Entry point of the `child` test.
pub fn child_main() {
    let Ok(role) = std::env::var(ENV_ROLE) else {
        return;
    };
    let args: Vec<String> = std::env::var(ENV_ARGS)
        .unwrap_or_default()
        .split('\u{1f}')
        .map(String::from)
        .collect();
    let code = match role.as_str() {
        "producer" => child_producer(&args),
        "bursty" => child_bursty(&args),
        "flooder" => child_flooder(&args),
        "slow_consumer" => child_slow_consumer(&args),
        "abuser" => child_abuser(&args),
        r => {
            eprintln!("unknown child role {r}");
            2
        }
    };
    std::process::exit(code);
}

/// Args: path, signal, items.
fn child_producer(args: &[String]) -> i32 {
    let path = &args[0];
    let config = config(parse_signal(&args[1]), 1024);
    let n: u64 = args[2].parse().unwrap();
    let mut tx = match handshake::connect_producer::<u64>(path, &config) {
        Ok(tx) => tx,
        Err(e) => {
            eprintln!("producer: connect: {e}");
            return 1;
        }
    };
    let mut next = 0u64;
    while next < n {
        let mut chunk = tx.write_chunk((n - next).min(4096) as usize).unwrap();
        let filled = chunk.len();
        next += chunk.fill_from_iter(next..) as u64;
        chunk.commit_all();
        if filled == 0 {
            if let Err(e) = tx.wait_writable(Some(Duration::from_secs(10))) {
                eprintln!("producer: wait: {e}");
                return 1;
            }
        }
    }
    0
}

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The bursts of a bursty producer: (items, sleep after it in µs).
pub fn burst_plan(seed: u64, rounds: usize, max_burst: u64) -> Vec<(u64, u64)> {
    let mut rng = Rng(seed);
    (0..rounds)
        .map(|_| (1 + rng.next() % max_burst, rng.next() % 2000))
        .collect()
}

/// Args: path, signal, capacity, seed, rounds, max_burst.
fn child_bursty(args: &[String]) -> i32 {
    let path = &args[0];
    let config = config(parse_signal(&args[1]), args[2].parse().unwrap());
    let plan = burst_plan(
        args[3].parse().unwrap(),
        args[4].parse().unwrap(),
        args[5].parse().unwrap(),
    );
    let mut tx = match handshake::connect_producer::<u64>(path, &config) {
        Ok(tx) => tx,
        Err(e) => {
            eprintln!("bursty: connect: {e}");
            return 1;
        }
    };
    let mut next = 0u64;
    let mut buf = Vec::new();
    for (burst, sleep_us) in plan {
        buf.clear();
        buf.extend(next..next + burst);
        next += burst;
        // Alternate single pushes and slices.
        if burst % 2 == 0 {
            for &x in &buf {
                if let Err(e) = tx.push_blocking(x, Some(Duration::from_secs(10))) {
                    eprintln!("bursty: push: {e}");
                    return 1;
                }
            }
        } else if let Err(e) = tx.push_all(&buf, Some(Duration::from_secs(10))) {
            eprintln!("bursty: push_all: {e}");
            return 1;
        }
        if sleep_us > 0 {
            std::thread::sleep(Duration::from_micros(sleep_us));
        }
    }
    0
}

/// The producer's side of the handshake written against the wire protocol
/// (for the hostile children): connects to `path`, sends a hello for `u64`
/// items, and returns the link, the welcome and the fds that came with it.
fn raw_producer_hello(path: &str, signal: SignalKind) -> (OwnedFd, WelcomeInfo, Vec<OwnedFd>) {
    let config = config(signal, 1024);
    let link = handshake::connect_socket(path, Duration::from_secs(10)).unwrap();
    let hello = Hello::new::<u64>(Role::Producer, &config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (welcome, fds) =
        handshake::exchange_hello(link.as_fd(), bytemuck::bytes_of(&hello), deadline).unwrap();
    (link, Welcome::parse(&welcome).unwrap(), fds)
}

/// A hostile producer: raw handshake, then writes the consumer's wake-up fd
/// (eventfd, or the pipe's write end) in a tight loop for `secs` seconds,
/// committing nothing. Args: path, signal, seconds.
fn child_flooder(args: &[String]) -> i32 {
    let path = &args[0];
    let signal = parse_signal(&args[1]);
    let secs: f64 = args[2].parse().unwrap();
    let (link, info, fds) = raw_producer_hello(path, signal);
    let ch = ChannelFds::from_wire(info.capacity, info.tag, info.signal, fds).unwrap();
    // eventfd: the one fd; pipe: [read end, write end].
    let data = ch.data.last().unwrap().as_raw_fd();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut writes = 0u64;
    let one = 1u64;
    while Instant::now() < end {
        for _ in 0..64 {
            // SAFETY: writes 8 bytes from a live local to an fd we own.
            unsafe { libc::write(data, (&one as *const u64).cast(), 8) };
        }
        writes += 64;
    }
    eprintln!("flooder: {writes} wake-up writes in {secs} s");
    drop(link);
    0
}

/// A hostile producer written against the wire protocol: raw hello, then it
/// abuses both signal fds it got (fills what it can send into, with
/// eventfd-style counter values too, then clears `O_NONBLOCK` behind the
/// loop's back), and for `secs` seconds commits items 0, 1, 2... by raw
/// writes to the ring while announcing a new sleep after each commit, so
/// that every release by the loop sends it a wake-up it never reads.
/// Args: path, signal, seconds.
fn child_abuser(args: &[String]) -> i32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    let path = &args[0];
    let signal = parse_signal(&args[1]);
    let secs: f64 = args[2].parse().unwrap();
    let (link, info, fds) = raw_producer_hello(path, signal);
    let max = 0xffff_ffff_ffff_fffe_u64.to_ne_bytes();
    for fd in &fds[1..] {
        let fd = fd.as_raw_fd();
        // SAFETY: fcntl, send and write from a live buffer on fds we own.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
            for _ in 0..100_000 {
                let sent = libc::send(
                    fd,
                    max.as_ptr().cast(),
                    8,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                );
                if sent <= 0 && libc::write(fd, max.as_ptr().cast(), 8) <= 0 {
                    break;
                }
            }
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    let cap = info.capacity as u64;
    let size = 384 + cap as usize * 8;
    // SAFETY: a fresh shared mapping of the ring memfd (at least `size`
    // bytes, checked by the loop's side), never unmapped before exit.
    let ring = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fds[0].as_raw_fd(),
            0,
        )
    };
    assert_ne!(ring, libc::MAP_FAILED);
    let ring = ring.cast::<u8>();
    // SAFETY: offsets 128 (write index), 256 (read index), 264 (producer
    // sleep word) and the slots from 384 are aligned u64 words inside the
    // mapping (the layout of `shmring::ring`).
    let at = |off: usize| unsafe { &*(ring.add(off) as *const AtomicU64) };
    let (write, read, sleep) = (at(128), at(256), at(264));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (mut next, mut seq) = (0u64, 1u64);
    while Instant::now() < end {
        if next - read.load(Ordering::Acquire) < cap {
            at(384 + (next % cap) as usize * 8).store(next, Ordering::Relaxed);
            next += 1;
            write.store(next, Ordering::Release);
        } else {
            std::thread::yield_now();
        }
        sleep.store(seq, Ordering::SeqCst);
        seq += 2;
    }
    eprintln!("abuser: {next} items committed in {secs} s");
    drop(link);
    0
}

/// Args: path, signal, items. Pops 0..items in order, slowly at first.
fn child_slow_consumer(args: &[String]) -> i32 {
    let path = &args[0];
    let config = config(parse_signal(&args[1]), 256);
    let n: u64 = args[2].parse().unwrap();
    let mut rx = match handshake::connect_consumer::<u64>(path, &config) {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("slow_consumer: connect: {e}");
            return 1;
        }
    };
    let mut buf = [0u64; 100];
    let mut next = 0u64;
    let mut rounds = 0u64;
    while next < n {
        let k = match rx.pop_slice_blocking(&mut buf, Some(Duration::from_secs(10))) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("slow_consumer: pop at {next}: {e}");
                return 1;
            }
        };
        for &x in &buf[..k] {
            if x != next {
                eprintln!("slow_consumer: got {x}, expected {next}");
                return 1;
            }
            next += 1;
        }
        rounds += 1;
        if rounds < 50 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    0
}

/// Number of open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Mappings of shmring segments in this process.
pub fn shm_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:shmring"))
        .count()
}

/// Resident set size in bytes.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf takes no pointer.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: fills the live timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Outcome of one producer as the loop saw it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub pid: i32,
    pub items: u64,
    /// Every item was the next integer.
    pub in_order: bool,
    pub wake: WakeStats,
}

pub struct LoopOpts {
    pub expect: usize,
    pub budget: usize,
    /// Fail when nothing happens (no item, no accept, no exit) for this long.
    pub stall: Duration,
    /// Fail after this long in all.
    pub overall: Duration,
}

struct Peer {
    rx: shmring_mio::MioConsumer<u64>,
    pid: i32,
    next: u64,
    in_order: bool,
    state: Readiness,
}

const LISTENER: Token = Token(0);

/// One thread, one `Poll`: accepts producers of u64 on `listener` and drains
/// them until `opts.expect` have hung up. Panics on a stall.
pub fn consume(listener: &mut MioListener, config: &Config, opts: &LoopOpts) -> Vec<Finished> {
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(listener, LISTENER, Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(256);
    let mut peers: HashMap<Token, Peer> = HashMap::new();
    let mut finished = Vec::new();
    let mut next_token = 1usize;
    let start = Instant::now();
    let mut progress = Instant::now();
    let mut due: Vec<Token> = Vec::new();
    while finished.len() < opts.expect {
        let now = Instant::now();
        assert!(
            now - progress < opts.stall,
            "stall: no progress for {:?} ({} peers, {} finished)",
            now - progress,
            peers.len(),
            finished.len()
        );
        assert!(now - start < opts.overall, "loop ran for {:?}", now - start);
        let mut timeout = Duration::from_millis(50);
        let mut deadlines: Vec<Instant> = listener.next_deadline().into_iter().collect();
        for p in peers.values() {
            match p.state {
                Readiness::Ready => timeout = Duration::ZERO,
                Readiness::Throttled(t) => deadlines.push(t),
                _ => {}
            }
        }
        for d in deadlines {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        poll.poll(&mut events, Some(timeout)).unwrap();
        due.clear();
        due.extend(events.iter().map(|e| e.token()));
        let now = Instant::now();
        if listener.next_deadline().is_some_and(|d| d <= now) {
            due.push(LISTENER);
        }
        for (&t, p) in &peers {
            match p.state {
                Readiness::Ready => due.push(t),
                Readiness::Throttled(until) if until <= now => due.push(t),
                _ => {}
            }
        }
        due.sort();
        due.dedup();
        if due.first() == Some(&LISTENER) {
            for r in listener
                .accept_consumers::<u64>(poll.registry(), config)
                .unwrap()
            {
                match r {
                    Ok(acc) => {
                        let mut rx = acc.endpoint;
                        rx.set_budget(opts.budget);
                        let t = Token(next_token);
                        next_token += 1;
                        poll.registry()
                            .register(&mut rx, t, Interest::READABLE)
                            .unwrap();
                        peers.insert(
                            t,
                            Peer {
                                rx,
                                pid: acc.peer.pid,
                                next: 0,
                                in_order: true,
                                state: Readiness::Ready,
                            },
                        );
                        // Drain once right away: it arms the wake-up.
                        due.push(t);
                        progress = Instant::now();
                    }
                    Err(e) => eprintln!("accept: {e}"),
                }
            }
        }
        for &t in &due {
            if t == LISTENER {
                continue;
            }
            let Some(p) = peers.get_mut(&t) else {
                continue;
            };
            let (next, in_order) = (&mut p.next, &mut p.in_order);
            let before = *next;
            let st =
                p.rx.drain_with(poll.registry(), |items| {
                    for &x in items {
                        *in_order &= x == *next;
                        *next += 1;
                    }
                })
                .unwrap_or_else(|e| panic!("drain of pid {}: {e}", p.pid));
            if p.next != before {
                progress = Instant::now();
            }
            p.state = st;
            if st == Readiness::Closed {
                let mut p = peers.remove(&t).unwrap();
                poll.registry().deregister(&mut p.rx).unwrap();
                finished.push(Finished {
                    pid: p.pid,
                    items: p.next,
                    in_order: p.in_order,
                    wake: p.rx.wake_stats(),
                });
                progress = Instant::now();
            }
        }
    }
    poll.registry().deregister(listener).unwrap();
    finished
}

pub fn bind(path: &Path) -> MioListener {
    MioListener::bind(path, &Default::default()).unwrap()
}
