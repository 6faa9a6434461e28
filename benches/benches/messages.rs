//! Message throughput between two processes, side by side in one run:
//! shmring's frame stream (one message per slot), shmring's typed ring (one
//! `[u8; N]` item per message, read in place) vs a `UnixStream` pair vs a
//! pipe vs a shmem-ipc sharedring (one `[u8; N]` item per message, read in
//! place: the like-for-like peer of the typed ring) vs iceoryx2
//! publish-subscribe (one `[u8; N]` sample per message, loaned, written,
//! sent; the subscriber reads it in place), for 64 B, 4 KiB, 64 KiB and
//! 1 MiB messages. The parent sends; a
//! child process receives, reads every byte (an order-sensitive checksum over
//! the whole payload) and prints count and checksum, which must match what
//! the sender computed, so no figure comes from a broken run. Every path
//! copies each message once into the transport (a slot, or the kernel).
//!
//! ```text
//! cargo bench -p shmring-benches --bench messages [-- --smoke]
//! SHMRING_BENCH_SIZE=64 cargo bench -p shmring-benches --bench messages   # one size only
//! SHMRING_BENCH_PATH="shmring typed ring" ...                              # one path only
//! SHMRING_BENCH_SIGNAL=eventfd ...   # shmring's wake-ups by eventfd (or pipe; default: socket)
//! ```

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmring::frames::{self, FrameConfig, FrameMeta, Received};
use shmring::handshake::{ListenOptions, Listener};
use shmring_benches::{machine, median, svg, write_report, Table};

const CHILD_VAR: &str = "SHMRING_MSG_CHILD";
const SIZES: [usize; 4] = [64, 4096, 64 << 10, 1 << 20];

/// `$f::<N>($count)` with `N` = `$size`, one of [`SIZES`] (the typed paths
/// carry `[u8; N]` items).
macro_rules! by_size {
    ($f:ident, $size:expr, $count:expr) => {
        match $size {
            64 => $f::<64>($count),
            4096 => $f::<4096>($count),
            65536 => $f::<65536>($count),
            1048576 => $f::<1048576>($count),
            other => panic!("no item type for {other}-byte messages"),
        }
    };
}

/// Checksum of the message stream: each message's words are summed (cheap
/// enough not to be what is measured: every byte is still read), then folded
/// into `h` in message order.
fn checksum(h: u64, msg: &[u8]) -> u64 {
    let mut words = msg.chunks_exact(8);
    let mut lanes = [0u64; 4];
    for (i, w) in words.by_ref().enumerate() {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        lanes[i & 3] = lanes[i & 3].wrapping_add(v);
    }
    let tail = words
        .remainder()
        .iter()
        .fold(0u64, |a, &b| a.rotate_left(8) ^ u64::from(b));
    let sum = lanes
        .iter()
        .fold(tail, |a, &l| a.rotate_left(13).wrapping_add(l));
    (h ^ sum ^ msg.len() as u64)
        .wrapping_mul(0x0000_0100_0000_01b3)
        .rotate_left(17)
}

/// Message `i` of `size` bytes: its index in the first word, a pattern after.
fn fill(buf: &mut [u8], i: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&i.to_le_bytes()[..n]);
}

fn template(size: usize) -> Vec<u8> {
    (0..size).map(|j| (j * 31 + 7) as u8).collect()
}

fn env(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name}"))
}

fn child(role: &str) {
    let (size, count) = (env("SIZE"), env("COUNT"));
    let mut h = 0u64;
    match role {
        "shmring" => {
            let path = std::env::var("SOCK").expect("SOCK");
            let mut rx =
                frames::connect(&path, &FrameConfig::consumer().signal(signal())).expect("connect");
            let mut n = 0;
            while n < count {
                if let Received::Frame(f) = rx.recv(Some(Duration::from_secs(10))).expect("recv") {
                    h = checksum(h, f.bytes());
                    n += 1;
                }
            }
        }
        "stream" | "pipe" => {
            // SAFETY: the parent passed us this fd, open and ours alone.
            let fd = unsafe { OwnedFd::from_raw_fd(env("FD") as i32) };
            let mut f = std::fs::File::from(fd);
            let mut buf = vec![0u8; size];
            for _ in 0..count {
                f.read_exact(&mut buf).expect("read");
                h = checksum(h, &buf);
            }
        }
        "ring" => h = by_size!(ring_child, size, count),
        "iceoryx2" => h = by_size!(iceoryx2_child, size, count),
        "shmem-ipc" => h = by_size!(shmem_ipc_child, size, count),
        other => panic!("unknown role {other}"),
    }
    println!("{count} {h:#x}");
}

/// The receiving side of [`ring`]: checksums each message in place.
fn ring_child<const N: usize>(count: usize) -> u64 {
    let path = std::env::var("SOCK").expect("SOCK");
    let mut rx = shmring::handshake::connect_consumer::<[u8; N]>(&path, &ring_config::<N>())
        .expect("connect");
    let (mut h, mut n) = (0u64, 0usize);
    while n < count {
        let k = {
            let chunk = rx.read_chunk(count - n).expect("read");
            // SAFETY: the producer is this bench's own parent process, trusted to
            // leave committed slots alone (the same contract as shmem-ipc's
            // `receive_trusted` in its row).
            let (a, b) = unsafe { chunk.as_slices() };
            for m in a.iter().chain(b) {
                h = checksum(h, m);
            }
            let k = chunk.len();
            chunk.release_all();
            k
        };
        if k == 0 {
            rx.wait_readable(Some(Duration::from_secs(10)))
                .expect("wait");
        }
        n += k;
    }
    h
}

/// A typed ring of about 4 MiB of `[u8; N]` items.
fn ring_config<const N: usize>() -> shmring::Config {
    shmring::Config::new(((4 << 20) / N).max(4).next_power_of_two())
        .type_name("message")
        .signal(signal())
}

/// shmring's wake-up fds: `SHMRING_BENCH_SIGNAL` (eventfd, pipe), else the
/// default (socket). Both processes read it.
fn signal() -> shmring::SignalKind {
    match std::env::var("SHMRING_BENCH_SIGNAL").as_deref() {
        Ok("eventfd") => shmring::SignalKind::EventFd,
        Ok("pipe") => shmring::SignalKind::Pipe,
        _ => shmring::SignalKind::default(),
    }
}

/// shmring's typed ring, one `[u8; N]` item per message: the sender copies
/// each message in once, the child reads it in place.
fn ring<const N: usize>(count: usize) -> f64 {
    let dir = std::env::temp_dir().join(format!("shmring-msg-ring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("{N}.sock"));
    let listener = Listener::bind(&path, &ListenOptions::default()).expect("bind");
    let child = spawn("ring", N, count, &[("SOCK", path.display().to_string())]);
    let mut tx = listener
        .accept_producer::<[u8; N]>(&ring_config::<N>())
        .expect("accept");
    let rate = stream(child, "ring", N, count, |msg| loop {
        let sent = {
            let mut chunk = tx.write_chunk(1).expect("chunk");
            // SAFETY: the consumer is this bench's own child process, trusted not
            // to touch slots before they are committed.
            let (a, b) = unsafe { chunk.as_mut_slices() };
            match a.first_mut().or(b.first_mut()) {
                Some(slot) => {
                    slot.copy_from_slice(msg);
                    chunk.commit_all();
                    true
                }
                None => false,
            }
        };
        if sent {
            break;
        }
        tx.wait_writable(Some(Duration::from_secs(10)))
            .expect("wait");
    });
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

fn ring_sized(size: usize, count: usize) -> f64 {
    by_size!(ring, size, count)
}

/// The iceoryx2 service of one run: `[u8; N]` payloads, a subscriber queue
/// of about 4 MiB, no overflow (the publisher blocks: every message counts).
fn iceoryx2_service<const N: usize>(
    node: &iceoryx2::node::Node<iceoryx2::prelude::ipc::Service>,
    name: &str,
) -> iceoryx2::service::port_factory::publish_subscribe::PortFactory<
    iceoryx2::prelude::ipc::Service,
    [u8; N],
    (),
> {
    node.service_builder(&name.try_into().expect("service name"))
        .publish_subscribe::<[u8; N]>()
        .subscriber_max_buffer_size(iceoryx2_depth::<N>())
        .history_size(0)
        .enable_safe_overflow(false)
        .max_publishers(1)
        .max_subscribers(1)
        .open_or_create()
        .expect("iceoryx2 service")
}

fn iceoryx2_depth<const N: usize>() -> usize {
    ((4 << 20) / N).clamp(2, 1024)
}

/// The receiving side of [`iceoryx2_run`]: checksums each sample in place.
fn iceoryx2_child<const N: usize>(count: usize) -> u64 {
    use iceoryx2::prelude::*;
    let name = std::env::var("SERVICE").expect("SERVICE");
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node");
    let service = iceoryx2_service::<N>(&node, &name);
    let subscriber = service
        .subscriber_builder()
        .buffer_size(iceoryx2_depth::<N>())
        .create()
        .expect("subscriber");
    let (mut h, mut n) = (0u64, 0usize);
    while n < count {
        match subscriber.receive().expect("receive") {
            Some(sample) => {
                h = checksum(h, &*sample);
                n += 1;
            }
            // No blocking receive in publish-subscribe alone: yield.
            None => std::thread::yield_now(),
        }
    }
    h
}

/// iceoryx2 publish-subscribe, one `[u8; N]` sample per message: loaned,
/// written in place (one copy, like the others), sent.
fn iceoryx2_run<const N: usize>(count: usize) -> f64 {
    use iceoryx2::prelude::*;
    let name = format!("shmring-bench/messages-{}-{N}", std::process::id());
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node");
    let service = iceoryx2_service::<N>(&node, &name);
    let publisher = service
        .publisher_builder()
        .unable_to_deliver_strategy(UnableToDeliverStrategy::Block)
        .create()
        .expect("publisher");
    let child = spawn("iceoryx2", N, count, &[("SERVICE", name)]);
    // Samples sent before the subscriber exists would be lost.
    let t0 = Instant::now();
    while service.dynamic_config().number_of_subscribers() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no iceoryx2 subscriber"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    iceoryx2::port::update_connections::UpdateConnections::update_connections(&publisher)
        .expect("connections");
    stream(child, "iceoryx2", N, count, |msg| {
        let mut sample = publisher.loan_uninit().expect("loan");
        // SAFETY: the payload is `N` writable bytes of the loaned sample
        // (a `MaybeUninit<[u8; N]>`), all written here before `assume_init`.
        let sample = unsafe {
            std::ptr::copy_nonoverlapping(
                msg.as_ptr(),
                sample.payload_mut().as_mut_ptr().cast::<u8>(),
                N,
            );
            sample.assume_init()
        };
        sample.send().expect("send");
    })
}

fn iceoryx2_sized(size: usize, count: usize) -> f64 {
    by_size!(iceoryx2_run, size, count)
}

/// The receiving side of [`shmem_ipc`]: opens the ring from inherited fds and
/// checksums each message where it lies in the ring.
fn shmem_ipc_child<const N: usize>(count: usize) -> u64 {
    use shmem_ipc::sharedring::Receiver;
    let file = |name: &str| {
        // SAFETY: the parent passed us this fd (a dup, no CLOEXEC), ours alone.
        std::fs::File::from(unsafe { OwnedFd::from_raw_fd(env(name) as i32) })
    };
    let mut rx: Receiver<[u8; N]> =
        Receiver::open(env("CAP"), file("MEMFD"), file("EMPTY"), file("FULL"))
            .expect("shmem-ipc open");
    let (mut h, mut n) = (0u64, 0usize);
    while n < count {
        let mut got = 0;
        rx.receive_raw(|p, k| {
            let k = k.min(count - n);
            for j in 0..k {
                // SAFETY: shmem-ipc hands us `k` readable items at `p` in the
                // mapped ring; the sender (our parent) does not write them
                // until we release them by returning `k`. u8 has no invalid
                // values.
                let msg = unsafe { std::slice::from_raw_parts(p.add(j).cast::<u8>(), N) };
                h = checksum(h, msg);
            }
            got = k;
            k
        })
        .expect("receive");
        n += got;
        if got == 0 {
            rx.block_until_readable().expect("block_until_readable");
        }
    }
    h
}

/// Spawns the receiving child with `role`; `fd` is inherited if given.
fn spawn(role: &str, size: usize, count: usize, extra: &[(&str, String)]) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.env(CHILD_VAR, role)
        .env("SIZE", size.to_string())
        .env("COUNT", count.to_string())
        .stdout(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn")
}

/// Waits for the child and checks its count and checksum.
fn check(child: std::process::Child, count: usize, h: u64, what: &str) {
    let out = child.wait_with_output().expect("child");
    assert!(out.status.success(), "{what}: receiver failed");
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got.trim(),
        format!("{count} {h:#x}"),
        "{what}: data differs"
    );
}

fn shmring(size: usize, count: usize) -> f64 {
    let dir = std::env::temp_dir().join(format!("shmring-msg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("{size}.sock"));
    let listener = Listener::bind(&path, &ListenOptions::default()).expect("bind");
    let child = spawn(
        "shmring",
        size,
        count,
        &[("SOCK", path.display().to_string())],
    );
    let conn = listener
        .accept(Some(Duration::from_secs(10)))
        .expect("accept");
    // A 4 MiB arena stays in the caches (a bigger one only adds misses).
    let slots = (4 << 20) / size.max(1);
    let mut tx = frames::serve(
        conn,
        &FrameConfig::new(slots.clamp(4, 1024) as u32, size).signal(signal()),
    )
    .expect("serve");
    let meta = FrameMeta::default();
    let rate = stream(child, "shmring", size, count, |msg| {
        let mut lease = loop {
            tx.reclaim(|_| {}).expect("reclaim");
            if let Some(l) = tx.try_lease() {
                break l;
            }
            let _ = tx.wait_returns(Some(Duration::from_millis(100)));
        };
        lease.as_mut()[..size].copy_from_slice(msg);
        loop {
            match tx.send_lease(lease, size, &meta) {
                Ok(()) => break,
                Err(e) if matches!(e.error, shmring::Error::Full) => {
                    let _ = tx.wait_writable(Some(Duration::from_millis(100)));
                    // The lease came back, its bytes as written: send it again.
                    lease = e.lease;
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

/// A shmem-ipc sharedring of `[u8; N]` items (about 4 MiB, like shmring's
/// arena), one message per item: the sender copies each message in once, the
/// child reads it in place.
fn shmem_ipc<const N: usize>(count: usize) -> f64 {
    use shmem_ipc::sharedring::Sender;
    let cap = ((4 << 20) / N).max(4);
    let mut tx: Sender<[u8; N]> = Sender::new(cap).expect("shmem-ipc sender");
    let dup = |fd: i32| {
        // SAFETY: dup of an fd we own; the copy has no CLOEXEC, so the child
        // inherits it.
        let d = unsafe { libc::dup(fd) };
        assert!(d >= 0, "dup");
        // SAFETY: a fresh fd that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(d) }
    };
    let fds = [
        dup(tx.memfd().as_file().as_raw_fd()),
        dup(tx.empty_signal().as_raw_fd()),
        dup(tx.full_signal().as_raw_fd()),
    ];
    let child = spawn(
        "shmem-ipc",
        N,
        count,
        &[
            ("MEMFD", fds[0].as_raw_fd().to_string()),
            ("EMPTY", fds[1].as_raw_fd().to_string()),
            ("FULL", fds[2].as_raw_fd().to_string()),
            ("CAP", cap.to_string()),
        ],
    );
    drop(fds);
    stream(child, "shmem-ipc", N, count, |msg| loop {
        let mut sent = false;
        tx.send_raw(|p, n| {
            if n == 0 {
                return 0;
            }
            // SAFETY: shmem-ipc hands us at least one writable item at
            // `p`, `N` bytes, which the receiver does not read until we
            // return 1.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), p.cast::<u8>(), N) };
            sent = true;
            1
        })
        .expect("send");
        if sent {
            break;
        }
        tx.block_until_writable().expect("block_until_writable");
    })
}

fn shmem_ipc_sized(size: usize, count: usize) -> f64 {
    by_size!(shmem_ipc, size, count)
}

/// A UnixStream pair or a pipe: the child reads the inherited end.
fn kernel(kind: &str, size: usize, count: usize) -> f64 {
    let (mine, theirs): (OwnedFd, OwnedFd) = if kind == "stream" {
        let (a, b) = UnixStream::pair().expect("pair");
        (a.into(), b.into())
    } else {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: both fds are new and ours.
        unsafe { (OwnedFd::from_raw_fd(fds[1]), OwnedFd::from_raw_fd(fds[0])) }
    };
    // Our end must not leak into the child; theirs must (no CLOEXEC).
    // SAFETY: fcntl on fds we own.
    unsafe {
        libc::fcntl(mine.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0);
    }
    let child = spawn(kind, size, count, &[("FD", theirs.as_raw_fd().to_string())]);
    drop(theirs);
    let mut f = std::fs::File::from(mine);
    stream(child, kind, size, count, |msg| {
        f.write_all(msg).expect("write")
    })
}

/// Sends `count` messages of `size` bytes through `send` (message `i`: its
/// index in the first word, a pattern after), then checks that the child
/// read as many with the same checksum: bytes per second, start to check.
fn stream(
    child: std::process::Child,
    what: &str,
    size: usize,
    count: usize,
    mut send: impl FnMut(&[u8]),
) -> f64 {
    let mut msg = template(size);
    let mut h = 0u64;
    let start = Instant::now();
    for i in 0..count as u64 {
        fill(&mut msg, i);
        h = checksum(h, &msg);
        send(&msg);
    }
    check(child, count, h, what);
    (size * count) as f64 / start.elapsed().as_secs_f64()
}

fn gbps(bytes_per_sec: f64) -> String {
    format!("{:.2} GB/s", bytes_per_sec / 1e9)
}

fn main() {
    // iceoryx2 warns that it runs without a config file, in every process.
    iceoryx2::prelude::set_log_level(iceoryx2::prelude::LogLevel::Error);
    if let Ok(role) = std::env::var(CHILD_VAR) {
        child(&role);
        return;
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (volume, reps) = if smoke {
        (8usize << 20, 1)
    } else {
        (1usize << 30, 5)
    };
    let mut out = format!(
        "Message throughput between two processes, {} MiB per size, median of {reps}{}\n\nMachine: {}\n\n",
        volume >> 20,
        if smoke { " (SMOKE)" } else { "" },
        machine()
    );
    let mut t = Table::new(&[
        "message",
        "shmring frames",
        "shmring ring",
        "UnixStream",
        "pipe",
        "shmem-ipc",
        "iceoryx2",
        "frames / UnixStream",
        "frames / pipe",
        "ring / shmem-ipc",
        "frames / iceoryx2",
        "best shmring / best peer",
    ]);
    let names = [
        "shmring frame stream",
        "shmring typed ring",
        "UnixStream",
        "pipe",
        "shmem-ipc",
        "iceoryx2",
    ];
    let mut plot: Vec<(String, Vec<(f64, f64)>)> =
        names.iter().map(|n| (n.to_string(), Vec::new())).collect();
    let only: Option<usize> = std::env::var("SHMRING_BENCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok());
    // For profiling one path: e.g. SHMRING_BENCH_PATH="shmring typed ring".
    let only_path = std::env::var("SHMRING_BENCH_PATH").ok();
    for size in SIZES.into_iter().filter(|s| only.is_none_or(|o| o == *s)) {
        let count = (volume / size).min(if smoke { 20_000 } else { 2_000_000 });
        // The paths take turns in every repetition, so that a slow spell of
        // the machine (this VM has them) hits them all alike.
        let paths: [&dyn Fn() -> f64; 6] = [
            &|| shmring(size, count),
            &|| ring_sized(size, count),
            &|| kernel("stream", size, count),
            &|| kernel("pipe", size, count),
            &|| shmem_ipc_sized(size, count),
            &|| iceoryx2_sized(size, count),
        ];
        let mut runs = vec![Vec::new(); paths.len()];
        for _ in 0..reps {
            for ((v, f), name) in runs.iter_mut().zip(&paths).zip(names) {
                v.push(if only_path.as_ref().is_none_or(|o| o.contains(name)) {
                    f()
                } else {
                    f64::NAN
                });
            }
        }
        let [s, r, u, p, m, x] = [0, 1, 2, 3, 4, 5].map(|i| median(&mut runs[i]));
        for (series, v) in plot.iter_mut().zip([s, r, u, p, m, x]) {
            series.1.push((size as f64, v / 1e9));
        }
        let label = if size >= 1 << 20 {
            format!("{} MiB", size >> 20)
        } else if size >= 1024 {
            format!("{} KiB", size >> 10)
        } else {
            format!("{size} B")
        };
        t.row(&[
            label,
            gbps(s),
            gbps(r),
            gbps(u),
            gbps(p),
            gbps(m),
            gbps(x),
            format!("{:.2}x", s / u),
            format!("{:.2}x", s / p),
            format!("{:.2}x", r / m),
            format!("{:.2}x", s / x),
            format!("{:.2}x", s.max(r) / u.max(p).max(m).max(x)),
        ]);
    }
    out.push_str(t.as_str());
    out.push_str("\nBudget (DESIGN.md): 64 KiB messages at least 5x a UnixStream pair.\n");
    print!("{out}");
    write_report("bench-messages.md", &out);
    let chart = svg::Chart {
        title: "Message throughput between two processes",
        x_label: "message size (bytes, log scale)",
        y_label: "GB/s",
        x_log: true,
        y_log: false,
        series: &plot,
    };
    write_report("bench-messages.svg", &chart.render());
}
