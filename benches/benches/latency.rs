//! One-way latency between two processes, side by side in one run, with the
//! consumer asleep and with the consumer busy-polling:
//!
//! * asleep: shmring (`Consumer::pop_blocking`, no spinning: it sleeps on its
//!   wake-up fd: the default socket signal, and the eventfd and pipe kinds
//!   in rows of their own, for the cost of the kind no peer can block) vs a bare eventfd (blocking `read`; the stamp travels in
//!   shared memory, the eventfd only wakes) vs the same bare eventfd waited
//!   for the way shmring waits (`ppoll` on it and a socket, with a timeout,
//!   then `read`: the system calls of shmring's wait without shmring) vs a
//!   `UnixStream` (blocking `read`) vs iceoryx2 publish-subscribe woken by
//!   its event service (the pattern its docs give for a sleeping subscriber);
//! * busy-polling: shmring (`try_pop` in a loop) vs a bare atomic in shared
//!   memory (the physical floor of this machine) vs a non-blocking
//!   `UnixStream` read in a loop vs iceoryx2 `Subscriber::receive` in a loop.
//!
//! A child process stamps each message with `CLOCK_MONOTONIC` (one clock for
//! every process) just before sending it; the parent takes the difference
//! when the message reaches its code. Asleep, the child sends one message per
//! millisecond so that the consumer is asleep every time; busy, one per
//! 100 µs, consumer and producer pinned to two different CPUs (else the
//! spinning consumer can hold the producer's CPU for a time slice). The
//! producer sleeps between sends and never spins (on this VM two spinning
//! vCPUs get throttled). Paths
//! alternate in rounds so that drifting machine conditions hit all alike. Every run checks that each stamp arrived, once, in order.
//!
//! ```text
//! cargo bench -p shmring-benches --bench latency            # 5000 samples per path
//! cargo bench -p shmring-benches --bench latency -- --smoke # 200
//! ```

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmring::handshake::{self, Listener};
use shmring::{Config, Error, SignalKind};
use shmring_benches::{machine, now_ns, percentile, spawn_role, svg, write_report, Table};

const CHILD_VAR: &str = "SHMRING_LATENCY_CHILD";
const TYPE_NAME: &str = "latency-ns";

/// The paths, in table order (the first of each mode is the reference).
const PATHS: [(&str, &str, bool); 11] = [
    ("bare eventfd (blocking read)", "eventfd", false),
    (
        "bare eventfd (ppoll with a socket and a timeout, then read: shmring's wait)",
        "eventfd-ppoll",
        false,
    ),
    ("shmring (pop_blocking, asleep)", "shmring", false),
    (
        "shmring, eventfd signal (pop_blocking, asleep)",
        "shmring-eventfd",
        false,
    ),
    (
        "shmring, pipe signal (pop_blocking, asleep)",
        "shmring-pipe",
        false,
    ),
    ("UnixStream (blocking read)", "unix", false),
    (
        "iceoryx2 (event listener wait, then receive)",
        "iceoryx2",
        false,
    ),
    ("bare atomic in shared memory (floor)", "atomic", true),
    ("shmring (try_pop loop)", "shmring", true),
    ("UnixStream (non-blocking read loop)", "unix", true),
    ("iceoryx2 (receive loop)", "iceoryx2", true),
];

/// Index in [`PATHS`] of the reference for a sleeping or a busy consumer.
fn reference(busy: bool) -> usize {
    let kind = if busy { "atomic" } else { "eventfd" };
    PATHS.iter().position(|p| p.1 == kind).unwrap_or(0)
}

/// The signal kind of a `shmring...` path: `shmring-eventfd`,
/// `shmring-pipe`, else the default (socket).
fn signal_of(kind: &str) -> SignalKind {
    match kind {
        "shmring-eventfd" => SignalKind::EventFd,
        "shmring-pipe" => SignalKind::Pipe,
        _ => SignalKind::default(),
    }
}

fn main() {
    // iceoryx2 warns that it runs without a config file, in every process.
    iceoryx2::prelude::set_log_level(iceoryx2::prelude::LogLevel::Error);
    if let Ok(role) = std::env::var(CHILD_VAR) {
        child(&role);
        return;
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    let samples: usize = if smoke { 200 } else { 5000 };
    const ROUNDS: usize = 10;
    let mut lat: Vec<Vec<u64>> = vec![Vec::new(); PATHS.len()];
    for _ in 0..ROUNDS {
        for (i, &(_, kind, busy)) in PATHS.iter().enumerate() {
            if std::env::var("ONLY")
                .is_ok_and(|o| !o.split(',').any(|x| x.parse::<usize>() == Ok(i)))
            {
                lat[i].extend([1u64]);
                continue;
            }
            lat[i].extend(measure(kind, busy, samples / ROUNDS));
        }
    }
    for v in &mut lat {
        v.sort_unstable();
    }

    let mut out = format!(
        "One-way latency between two processes, {samples} samples per path{}\n\nMachine: {}\n\n",
        if smoke { " (SMOKE)" } else { "" },
        machine()
    );
    let mut t = Table::new(&[
        "consumer",
        "path",
        "p50",
        "p99",
        "p99.9",
        "p50 vs reference",
    ]);
    for (i, (name, _, busy)) in PATHS.iter().enumerate() {
        let reference = &lat[reference(*busy)];
        let v = &lat[i];
        t.row(&[
            if *busy { "busy-polling" } else { "asleep" }.to_string(),
            name.to_string(),
            us(percentile(v, 50.0)),
            us(percentile(v, 99.0)),
            us(percentile(v, 99.9)),
            format!(
                "{:.2}x",
                percentile(v, 50.0) as f64 / percentile(reference, 50.0).max(1) as f64
            ),
        ]);
    }
    out.push_str(t.as_str());
    out.push_str(
        "\nReference: the bare eventfd for a sleeping consumer, the bare atomic for a busy one.\n",
    );
    print!("{out}");
    write_report("bench-latency.md", &out);

    // Latency distribution: percentile (x) against latency (y, log scale).
    let ps: Vec<f64> = (1..=999).map(|p| p as f64 / 10.0).collect();
    let series: Vec<(String, Vec<(f64, f64)>)> = PATHS
        .iter()
        .zip(&lat)
        .map(|((name, _, _), v)| {
            let pts = ps
                .iter()
                .map(|&p| (p, percentile(v, p).max(1) as f64 / 1000.0))
                .collect();
            (name.to_string(), pts)
        })
        .collect();
    let chart = svg::Chart {
        title: "One-way latency between two processes",
        x_label: "percentile",
        y_label: "latency (µs, log scale)",
        x_log: false,
        y_log: true,
        series: &series,
    };
    write_report("bench-latency.svg", &chart.render());
}

/// The iceoryx2 node, the publish-subscribe service of u64 stamps `name`,
/// and the event service `name/wake` a sleeping subscriber waits on.
fn iceoryx2_services(
    name: &str,
) -> (
    iceoryx2::node::Node<iceoryx2::prelude::ipc::Service>,
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<
        iceoryx2::prelude::ipc::Service,
        u64,
        (),
    >,
    iceoryx2::service::port_factory::event::PortFactory<iceoryx2::prelude::ipc::Service>,
) {
    use iceoryx2::prelude::*;
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node");
    let service = node
        .service_builder(&name.try_into().expect("service name"))
        .publish_subscribe::<u64>()
        .subscriber_max_buffer_size(64)
        .open_or_create()
        .expect("iceoryx2 service");
    let wake = format!("{name}/wake");
    let event = node
        .service_builder(&wake.as_str().try_into().expect("event name"))
        .event()
        .open_or_create()
        .expect("iceoryx2 event");
    (node, service, event)
}

/// The two atomics of the atomic ping-pong, in a 16-byte shared memfd
/// mapping: the producer's stamp, then the consumer's ack.
struct Cells(*mut libc::c_void);

impl Cells {
    /// A fresh 16-byte memfd named `name` (inheritable: no CLOEXEC, for the
    /// child) and its mapping.
    fn create(name: &std::ffi::CStr) -> (OwnedFd, Self) {
        // SAFETY: a NUL-terminated name; no CLOEXEC so the child inherits it.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), 0) };
        assert!(raw >= 0, "memfd_create");
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on our memfd.
        assert_eq!(unsafe { libc::ftruncate(raw, 16) }, 0, "ftruncate");
        let cells = Cells::map(raw);
        (fd, cells)
    }

    /// Maps the (already sized) memfd `fd`.
    fn map(fd: i32) -> Self {
        // SAFETY: maps 16 bytes of a memfd of at least that size; the mapping
        // is used only through the two AtomicU64 handed out below and is
        // unmapped on drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                16,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap");
        Cells(p)
    }

    fn cell(&self, i: usize) -> &AtomicU64 {
        // SAFETY: `i` < 2: 8 bytes at a page-aligned offset of the live
        // 16-byte mapping, accessed only atomically by both processes.
        unsafe { &*(self.0 as *const AtomicU64).add(i.min(1)) }
    }

    fn stamp(&self) -> &AtomicU64 {
        self.cell(0)
    }

    fn ack(&self) -> &AtomicU64 {
        self.cell(1)
    }
}

impl Drop for Cells {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`; the references handed out
        // borrow `self`, so none outlives this.
        unsafe { libc::munmap(self.0, 16) };
    }
}

/// Busy-polling that gives up (panics) past a deadline instead of spinning
/// for ever on a lost message.
struct Guard<'a> {
    spins: u64,
    deadline: u64,
    what: &'a str,
}

impl Guard<'_> {
    fn spin(&mut self) {
        self.spins += 1;
        if self.spins % 4096 == 0 {
            assert!(
                now_ns() < self.deadline,
                "{}: a message never came",
                self.what
            );
        }
        std::hint::spin_loop();
    }
}

fn us(ns: u64) -> String {
    format!("{:.2} µs", ns as f64 / 1000.0)
}

fn spawn(role: &str, env: &[(&str, String)]) -> std::process::Child {
    spawn_role(CHILD_VAR, role, env)
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name}"))
}

/// An inherited fd (created without CLOEXEC by the parent).
fn inherited(name: &str) -> OwnedFd {
    // SAFETY: the parent passed this fd number for us to own; nothing else in
    // this process uses it.
    unsafe { OwnedFd::from_raw_fd(env_u64(name) as i32) }
}

/// This process's CPU affinity.
fn affinity() -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        set
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: passes a live cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

/// Pins this process to the `k`-th CPU it may run on (busy-polling: the
/// consumer and the producer must not share a CPU, or the spinning one
/// delays the other by a time slice).
fn pin(k: usize) {
    let allowed = affinity();
    // SAFETY: CPU_ISSET/CPU_SET/CPU_ZERO read and write the live sets.
    let cpu = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
        .nth(k);
    if let Some(cpu) = cpu {
        // SAFETY: as above.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            set
        };
        set_affinity(&set);
    }
}

/// The producer: one stamp per `GAP_NS`, `SAMPLES` of them.
fn child(role: &str) {
    if std::env::var("PIN").is_ok() {
        pin(1);
    }
    let n = env_u64("SAMPLES");
    let gap = Duration::from_nanos(env_u64("GAP_NS"));
    // Sleep between sends, never spin: this VM's two vCPUs are throttled
    // when both spin, which would show up as the consumer's latency.
    let wait = || std::thread::sleep(gap);
    match role {
        "shmring" => {
            let path = std::env::var("SOCK").expect("SOCK");
            let signal = signal_of(&std::env::var("SIGNAL").unwrap_or_default());
            let cfg = Config::new(1024).type_name(TYPE_NAME).signal(signal);
            let mut tx = handshake::connect_producer::<u64>(path, &cfg).expect("connect");
            for _ in 0..n {
                wait();
                tx.try_push(now_ns()).expect("push");
            }
            // Stay until the consumer has everything (a hang-up could race it).
            let _ = tx.wait_writable(Some(Duration::from_millis(10)));
            std::thread::sleep(Duration::from_millis(50));
        }
        "iceoryx2" => {
            let name = std::env::var("SERVICE").expect("SERVICE");
            let (_node, service, event) = iceoryx2_services(&name);
            let publisher = service.publisher_builder().create().expect("publisher");
            let notifier = event.notifier_builder().create().expect("notifier");
            let wake = std::env::var_os("WAKE").is_some();
            for _ in 0..n {
                wait();
                publisher.send_copy(now_ns()).expect("send");
                if wake {
                    notifier.notify().expect("notify");
                }
            }
        }
        "eventfd" => {
            // The stamp goes through shared memory, the eventfd only wakes:
            // two wake-ups the parent had no time to read between add up
            // in the counter, and it counts the older one as lost. No
            // reply from the parent: the pacing is that of the other paths.
            let (fd, cells) = (inherited("FD"), inherited("CELLS"));
            let cells = Cells::map(cells.as_raw_fd());
            for _ in 0..n {
                wait();
                cells.stamp().store(now_ns(), Ordering::Release);
                let one = 1u64;
                // SAFETY: writes 8 bytes from a live local to our eventfd.
                unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
        }
        "unix" => {
            let mut s = UnixStream::from(inherited("FD"));
            for _ in 0..n {
                wait();
                s.write_all(&now_ns().to_le_bytes()).expect("write");
            }
        }
        "atomic" => {
            let fd = inherited("FD");
            let cells = Cells::map(fd.as_raw_fd());
            let (cell, ack) = (cells.stamp(), cells.ack());
            let mut last = 0;
            for _ in 0..n {
                wait();
                // Ping-pong: the next stamp only once the last one was taken
                // (checked asleep, as above).
                let give_up = now_ns() + 1_000_000_000;
                while ack.load(Ordering::Acquire) != last {
                    if now_ns() > give_up {
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(10));
                }
                last = now_ns();
                cell.store(last, Ordering::Release);
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs one path for `n` samples: the latencies, checked to be `n` stamps,
/// strictly increasing (each arrived once, in order).
fn measure(kind: &str, busy: bool, n: usize) -> Vec<u64> {
    let gap_ns: u64 = if busy { 100_000 } else { 1_000_000 };
    let mut common = vec![("SAMPLES", n.to_string()), ("GAP_NS", gap_ns.to_string())];
    let saved = affinity();
    if busy && std::env::var_os("SHMRING_BENCH_NO_PIN").is_none() {
        // Consumer on one CPU, producer on another.
        pin(0);
        common.push(("PIN", "1".into()));
    }
    let mut guard = Guard {
        spins: 0,
        deadline: now_ns() + 30_000_000_000 + n as u64 * gap_ns,
        what: kind,
    };
    let mut got = Got {
        stamps: Vec::with_capacity(n),
        lat: Vec::with_capacity(n),
        lost: 0,
    };
    match kind {
        k if k.starts_with("shmring") => {
            let dir = std::env::temp_dir().join(format!("shmring-lat-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("dir");
            let path = dir.join("s.sock");
            let listener = Listener::bind(&path, &Default::default()).expect("bind");
            let mut env = common.to_vec();
            env.push(("SOCK", path.display().to_string()));
            env.push(("SIGNAL", k.to_string()));
            let mut child = spawn("shmring", &env);
            // No spinning in blocking calls: asleep means asleep.
            let cfg = Config::new(1024)
                .type_name(TYPE_NAME)
                .spin(Duration::ZERO)
                .signal(signal_of(k));
            let mut rx = listener.accept_consumer::<u64>(&cfg).expect("accept");
            while got.stamps.len() < n {
                if busy {
                    match rx.try_pop() {
                        Ok(ts) => got.take(ts),
                        Err(Error::Empty) => guard.spin(),
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    got.take(rx.pop_blocking(Some(Duration::from_secs(5))).expect("pop"));
                }
            }
            child.wait().expect("child");
        }
        "iceoryx2" => {
            let name = format!("shmring-bench/latency-{}", std::process::id());
            let (_node, service, event) = iceoryx2_services(&name);
            let subscriber = service
                .subscriber_builder()
                .buffer_size(64)
                .create()
                .expect("subscriber");
            let listener = event.listener_builder().create().expect("listener");
            let mut env = common.to_vec();
            env.push(("SERVICE", name));
            if !busy {
                env.push(("WAKE", "1".into()));
            }
            let mut child = spawn("iceoryx2", &env);
            while got.stamps.len() < n {
                match subscriber.receive().expect("receive") {
                    Some(sample) => got.take(*sample),
                    None if busy => guard.spin(),
                    None => {
                        // Asleep until the producer's notifier wakes us.
                        listener
                            .timed_wait_all(|_| {}, Duration::from_secs(5))
                            .expect("wait");
                    }
                }
            }
            child.wait().expect("child");
        }
        "eventfd" | "eventfd-ppoll" => {
            // The syscalls of shmring's wait without shmring: ppoll on the
            // eventfd and a socket (shmring's link to its peer) with a
            // timeout, then the read.
            let with_ppoll = kind == "eventfd-ppoll";
            let mut link = [0i32; 2];
            // SAFETY: socketpair writes two fds into the live array.
            let r = unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                    0,
                    link.as_mut_ptr(),
                )
            };
            assert_eq!(r, 0, "socketpair");
            // SAFETY: fresh fds that nothing else owns.
            let _link = unsafe { (OwnedFd::from_raw_fd(link[0]), OwnedFd::from_raw_fd(link[1])) };
            // SAFETY: eventfd has no pointer arguments. Not CLOEXEC: the
            // child inherits it.
            let raw = unsafe { libc::eventfd(0, 0) };
            assert!(raw >= 0, "eventfd");
            // SAFETY: a fresh fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let (cells_fd, cells) = Cells::create(c"shmring-latency-eventfd");
            let mut env = common.to_vec();
            env.push(("FD", raw.to_string()));
            env.push(("CELLS", cells_fd.as_raw_fd().to_string()));
            let mut child = spawn("eventfd", &env);
            // A blocking read (the reference), so no timeout of its own: if
            // the child stops sending, this ends the bench instead of a hang.
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let watchdog = {
                let done = done.clone();
                let limit = Duration::from_secs(10) + Duration::from_nanos(gap_ns * n as u64 * 4);
                std::thread::spawn(move || {
                    let t0 = std::time::Instant::now();
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        if t0.elapsed() > limit {
                            eprintln!("latency: the eventfd child stopped sending");
                            std::process::exit(1);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            };
            while got.stamps.len() + got.lost < n {
                if with_ppoll {
                    let mut fds = [
                        libc::pollfd {
                            fd: fd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        },
                        libc::pollfd {
                            fd: link[0],
                            events: libc::POLLIN | libc::POLLRDHUP,
                            revents: 0,
                        },
                    ];
                    let ts = libc::timespec {
                        tv_sec: 5,
                        tv_nsec: 0,
                    };
                    // SAFETY: two live pollfds and a live timespec.
                    let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
                    assert_eq!(r, 1, "ppoll");
                }
                let mut wakes = 0u64;
                // SAFETY: reads 8 bytes into a live local.
                let r = unsafe { libc::read(fd.as_raw_fd(), (&mut wakes as *mut u64).cast(), 8) };
                assert_eq!(r, 8, "eventfd read");
                // A stamp seen twice: the next one landed before this one
                // was loaded (the parent stalled for a gap); one is lost.
                let stamp = cells.stamp().load(Ordering::Acquire);
                if got.stamps.last() == Some(&stamp) {
                    got.lost += 1;
                } else {
                    got.take(stamp);
                }
                got.lost += wakes.saturating_sub(1) as usize;
            }
            done.store(true, std::sync::atomic::Ordering::Release);
            watchdog.join().expect("watchdog");
            child.wait().expect("child");
        }
        "unix" => {
            let mut fds = [0i32; 2];
            // SAFETY: socketpair writes two fds into the live array. Not
            // CLOEXEC: the child inherits its end.
            let r =
                unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
            assert_eq!(r, 0, "socketpair");
            // SAFETY: fresh fds that nothing else owns.
            let (mine, theirs) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let mut env = common.to_vec();
            env.push(("FD", fds[1].to_string()));
            let mut child = spawn("unix", &env);
            drop(theirs);
            let mut s = UnixStream::from(mine);
            s.set_nonblocking(busy).expect("nonblocking");
            let mut buf = [0u8; 8];
            let mut have = 0;
            while got.stamps.len() < n {
                match s.read(&mut buf[have..]) {
                    Ok(0) => panic!("unix producer went away"),
                    Ok(k) => {
                        have += k;
                        if have == 8 {
                            got.take(u64::from_le_bytes(buf));
                            have = 0;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.spin(),
                    Err(e) => panic!("{e}"),
                }
            }
            child.wait().expect("child");
        }
        "atomic" => {
            let (fd, cells) = Cells::create(c"shmring-latency-atomic");
            let (cell, ack) = (cells.stamp(), cells.ack());
            let mut env = common.to_vec();
            env.push(("FD", fd.as_raw_fd().to_string()));
            let mut child = spawn("atomic", &env);
            let mut last = 0;
            while got.stamps.len() < n {
                let v = cell.load(Ordering::Acquire);
                if v != last {
                    last = v;
                    got.take(v);
                    ack.store(v, Ordering::Release);
                } else {
                    guard.spin();
                }
            }
            child.wait().expect("child");
            drop(cells);
            drop(fd);
        }
        other => panic!("unknown path {other}"),
    }
    set_affinity(&saved);
    assert_eq!(
        got.stamps.len() + got.lost,
        n,
        "{kind}: every stamp arrived"
    );
    if got.lost > 0 {
        eprintln!(
            "{kind}: {} wake-ups added up with the next one (stamps lost)",
            got.lost
        );
    }
    assert!(
        got.stamps.windows(2).all(|w| w[0] < w[1]),
        "{kind}: stamps out of order or repeated"
    );
    got.lat
}

/// Stamps received, and their latencies.
struct Got {
    stamps: Vec<u64>,
    lat: Vec<u64>,
    /// Stamps overwritten before they were read (eventfd paths only).
    lost: usize,
}

impl Got {
    fn take(&mut self, ts: u64) {
        self.lat.push(now_ns().saturating_sub(ts));
        self.stamps.push(ts);
    }
}
