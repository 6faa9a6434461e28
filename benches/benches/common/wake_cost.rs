//! What one hand-over to a sleeping thread costs on this machine, with no
//! ring and no GStreamer: a bare eventfd between two threads, one wake-up
//! per `period` (as a stream of frames that far apart needs: the consumer
//! has nothing to do between frames, so it sleeps). On bare metal this is a
//! few µs; on a VM, waking a halted vCPU takes the waker a VM exit and the
//! sleeper tens of µs: the floor under any two-process pipeline's CPU.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Medians (latency, write) and mean (sleeper CPU) over the wake-ups.
#[derive(Debug, Clone, Copy)]
pub struct WakeCost {
    /// The waker's `write` that wakes the sleeper (its CPU: it never blocks).
    pub write: Duration,
    /// CPU the sleeper spends per wake-up (back from `ppoll`, drain, sleep).
    pub sleeper_cpu: Duration,
    /// From the start of the `write` until the sleeper runs.
    pub latency: Duration,
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live local the call writes; the clock id is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `n` wake-ups `period` apart; `None` if a wake-up got lost (1 s).
pub fn measure(period: Duration, n: u32) -> Option<WakeCost> {
    // SAFETY: eventfd takes no pointers; the fd is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd that nothing else owns.
    let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
    let base = Instant::now();
    let stamp = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(AtomicU32::new(0));
    let sleeper = {
        let (fd, stamp, acks) = (fd.clone(), stamp.clone(), acks.clone());
        std::thread::spawn(move || -> Option<(Duration, Vec<Duration>)> {
            let mut lat = Vec::with_capacity(n as usize);
            let cpu0 = thread_cpu();
            for i in 0..n {
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one live pollfd; returns within the 1 s timeout.
                if unsafe { libc::poll(&mut p, 1, 1000) } != 1 {
                    return None;
                }
                let woke = base.elapsed();
                let mut v = 0u64;
                // SAFETY: reads 8 bytes into a live u64.
                unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
                lat.push(woke.saturating_sub(Duration::from_nanos(stamp.load(Ordering::Acquire))));
                acks.store(i + 1, Ordering::Release);
            }
            Some(((thread_cpu() - cpu0) / n, lat))
        })
    };
    let mut writes = Vec::with_capacity(n as usize);
    'wakes: for i in 0..n {
        // The sleeper took the last wake-up; give it `period` to fall asleep.
        let t = Instant::now();
        while acks.load(Ordering::Acquire) < i || t.elapsed() < period {
            if t.elapsed() > Duration::from_secs(1) {
                // Lost (the sleeper gives up after 1 s without a wake-up).
                break 'wakes;
            }
            std::hint::spin_loop();
        }
        let one = 1u64;
        let w0 = Instant::now();
        stamp.store(
            u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        // SAFETY: writes 8 bytes from a live u64.
        unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        writes.push(w0.elapsed());
    }
    let (sleeper_cpu, mut lat) = sleeper.join().ok()??;
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    Some(WakeCost {
        write: med(&mut writes),
        sleeper_cpu,
        latency: med(&mut lat),
    })
}
