//! Two-thread u64 throughput runs, one per peer, all with the same shape: the
//! producer writes `0..n` in chunks of at most `batch` items, the consumer
//! reads chunks of at most `batch` items and sums them (the sum is checked by
//! the caller, so nothing is lost or optimised away).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use shmring::{channel, Config, Error};

/// Ring capacity (items) for every peer.
pub const CAPACITY: usize = 16 * 1024;
const WAIT: Option<Duration> = Some(Duration::from_secs(30));

/// Expected sum of `0..n`.
pub fn expected(n: u64) -> u64 {
    n.wrapping_mul(n.wrapping_sub(1)) / 2
}

/// Writes `start, start + 1, ...` into `s`; returns the next value.
#[inline]
fn fill(s: &mut [u64], start: u64) -> u64 {
    for (i, x) in s.iter_mut().enumerate() {
        *x = start + i as u64;
    }
    start + s.len() as u64
}

/// Wrapping sum of `s`.
#[inline]
fn total(s: &[u64]) -> u64 {
    s.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

/// The peers measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// shmring `channel::pair` with wake-ups on (blocking waits when empty/full).
    Shmring,
    /// rtrb: no signalling at all, both sides spin.
    Rtrb,
    /// shmem-ipc sharedring: eventfd signalling, its blocking waits.
    ShmemIpc,
    /// A Unix stream socket pair, `batch * 8`-byte writes.
    UnixSocket,
    /// `std::sync::mpsc::sync_channel` (in-process baseline): items sent one
    /// by one (it has no batch API), received up to `batch` at a time.
    Mpsc,
}

impl Peer {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Shmring => "shmring",
            Peer::Rtrb => "rtrb",
            Peer::ShmemIpc => "shmem-ipc",
            Peer::UnixSocket => "unix socket",
            Peer::Mpsc => "std mpsc",
        }
    }

    /// Runs `n` items through and returns the elapsed time and the sum read.
    pub fn run(self, n: u64, batch: usize) -> (Duration, u64) {
        match self {
            Peer::Shmring => shmring_run(n, batch),
            Peer::Rtrb => rtrb_run(n, batch),
            Peer::ShmemIpc => shmem_ipc_run(n, batch),
            Peer::UnixSocket => unix_run(n, batch),
            Peer::Mpsc => mpsc_run(n, batch),
        }
    }
}

fn shmring_run(n: u64, batch: usize) -> (Duration, u64) {
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(CAPACITY)).expect("shmring pair");
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < n {
            let mut chunk = tx
                .write_chunk(batch.min((n - next) as usize))
                .expect("write_chunk");
            if chunk.is_empty() {
                tx.wait_writable(WAIT).expect("wait_writable");
                continue;
            }
            // The safe path: volatile copies into the slots (one store per item).
            let k = chunk.fill_from_iter(next..);
            next += k as u64;
            chunk.commit_all();
        }
    });
    let mut sum = 0u64;
    let mut got = 0u64;
    while got < n {
        let chunk = rx.read_chunk(batch).expect("read_chunk");
        if chunk.is_empty() {
            match rx.wait_readable(WAIT) {
                Ok(()) => continue,
                Err(Error::Disconnected | Error::PeerDied) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // The safe path: volatile copies out of the slots (one load per item).
        sum = chunk.iter().fold(sum, |a, x| a.wrapping_add(x));
        got += chunk.len() as u64;
        chunk.release_all();
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    (elapsed, sum)
}

fn rtrb_run(n: u64, batch: usize) -> (Duration, u64) {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < n {
            let k = batch.min((n - next) as usize).min(tx.slots());
            if k == 0 {
                std::hint::spin_loop();
                continue;
            }
            // The uninit chunk filled from an iterator: one pass, rtrb's fast path
            // (`write_chunk` would first default-fill the slots).
            let chunk = tx.write_chunk_uninit(k).expect("slots checked");
            let start = next;
            next += chunk.fill_from_iter(start..start + k as u64) as u64;
        }
    });
    let mut sum = 0u64;
    let mut got = 0u64;
    while got < n {
        let k = batch.min(rx.slots());
        if k == 0 {
            std::hint::spin_loop();
            continue;
        }
        let chunk = rx.read_chunk(k).expect("slots checked");
        let (a, b) = chunk.as_slices();
        sum = sum.wrapping_add(total(a)).wrapping_add(total(b));
        got += k as u64;
        chunk.commit_all();
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    (elapsed, sum)
}

fn shmem_ipc_run(n: u64, batch: usize) -> (Duration, u64) {
    use shmem_ipc::sharedring::{Receiver, Sender};
    let mut rx: Receiver<u64> = Receiver::new(CAPACITY).expect("shmem-ipc receiver");
    let memfd = rx.memfd().as_file().try_clone().expect("dup");
    let empty = rx.empty_signal().try_clone().expect("dup");
    let full = rx.full_signal().try_clone().expect("dup");
    let mut tx: Sender<u64> = Sender::open(CAPACITY, memfd, empty, full).expect("shmem-ipc sender");
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < n {
            let want = batch.min((n - next) as usize);
            // SAFETY: only this Sender and the one Receiver above touch the ring.
            let status = unsafe {
                tx.send_trusted(|s| {
                    let k = want.min(s.len());
                    next = fill(&mut s[..k], next);
                    k
                })
            }
            .expect("send");
            if status.remaining == 0 && next < n {
                tx.block_until_writable().expect("block_until_writable");
            }
        }
    });
    let mut sum = 0u64;
    let mut got = 0u64;
    while got < n {
        // SAFETY: only this Receiver and the one Sender touch the ring.
        let status = unsafe {
            rx.receive_trusted(|s| {
                let k = batch.min(s.len());
                sum = sum.wrapping_add(total(&s[..k]));
                got += k as u64;
                k
            })
        }
        .expect("receive");
        if status.remaining == 0 && got < n {
            rx.block_until_readable().expect("block_until_readable");
        }
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    (elapsed, sum)
}

fn mpsc_run(n: u64, batch: usize) -> (Duration, u64) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(CAPACITY);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(i).expect("send");
        }
    });
    let mut sum = 0u64;
    let mut got = 0u64;
    while got < n {
        let first = rx.recv().expect("recv");
        sum = sum.wrapping_add(first);
        got += 1;
        for x in rx.try_iter().take(batch.saturating_sub(1)) {
            sum = sum.wrapping_add(x);
            got += 1;
        }
    }
    producer.join().expect("producer");
    (start.elapsed(), sum)
}

fn unix_run(n: u64, batch: usize) -> (Duration, u64) {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        let mut buf = vec![0u8; batch * 8];
        let mut next = 0u64;
        while next < n {
            let k = batch.min((n - next) as usize);
            for c in buf[..k * 8].chunks_exact_mut(8) {
                c.copy_from_slice(&next.to_ne_bytes());
                next += 1;
            }
            a.write_all(&buf[..k * 8]).expect("write");
        }
    });
    let mut buf = vec![0u8; batch * 8];
    let mut have = 0usize;
    let mut sum = 0u64;
    let mut got = 0u64;
    while got < n {
        let r = b.read(&mut buf[have..]).expect("read");
        assert!(r > 0, "socket closed early");
        have += r;
        let whole = have / 8 * 8;
        for c in buf[..whole].chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            sum = sum.wrapping_add(u64::from_ne_bytes(w));
        }
        got += (whole / 8) as u64;
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    (elapsed, sum)
}
