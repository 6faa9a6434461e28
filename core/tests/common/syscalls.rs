//! Counts the system calls one thread makes, without ptrace and without
//! sampling: a seccomp filter installed on that thread alone hands every one
//! of its calls to a supervisor thread (`SECCOMP_RET_USER_NOTIF`), which
//! records it and lets it run unchanged (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
//! Every call is seen, whatever the load of the machine: counts are exact.
//!
//! Only the calls made inside [`Gate::measure`] are recorded (the thread's
//! start and exit make calls of their own). The supervisor never allocates
//! nor locks: the measured thread may be inside `malloc` when it calls.
//!
//! Shared by `core/tests` and `examples/tests` (`#[path]`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// Highest syscall number recorded one by one (larger ones count in
/// [`Syscalls::total`] and [`Syscalls::other`] only).
const MAX_NR: usize = 1024;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// What one thread called while measured.
#[derive(Debug, Clone, Default)]
pub struct Syscalls {
    /// Every call, by number: `(nr, count)`, non-zero counts only.
    pub by_nr: Vec<(libc::c_long, u64)>,
    /// All calls.
    pub total: u64,
    /// Wake-up writes: `write`s to an eventfd or a pipe, and `sendto`s
    /// (what `send` is) on a socket (the default socket signal).
    pub wake_writes: u64,
    /// `write`s and `sendto`s to anything else.
    pub other_writes: u64,
}

impl Syscalls {
    /// Calls of number `nr`.
    pub fn count(&self, nr: libc::c_long) -> u64 {
        self.by_nr
            .iter()
            .find(|(n, _)| *n == nr)
            .map_or(0, |(_, c)| *c)
    }

    /// Every call but the writes (`write`, `sendto`): `(nr, count)`.
    pub fn other(&self) -> Vec<(libc::c_long, u64)> {
        self.by_nr
            .iter()
            .copied()
            .filter(|(n, _)| *n != libc::SYS_write && *n != libc::SYS_sendto)
            .collect()
    }
}

/// Handed to the measured closure: brackets the region whose calls count.
pub struct Gate<'a> {
    on: &'a AtomicBool,
}

impl Gate<'_> {
    /// Runs `f`, recording every system call this thread makes meanwhile.
    pub fn measure<R>(&self, f: impl FnOnce() -> R) -> R {
        self.on.store(true, Ordering::SeqCst);
        let r = f();
        self.on.store(false, Ordering::SeqCst);
        r
    }
}

struct Record {
    by_nr: Vec<AtomicU64>,
    total: AtomicU64,
    beyond: AtomicU64,
    wake_writes: AtomicU64,
    other_writes: AtomicU64,
}

/// Runs `f` on a new thread whose system calls are all handed to a
/// supervisor; returns what `f` returned and the calls made inside its
/// [`Gate::measure`] regions. Panics if seccomp user notification is not
/// available (Linux 5.5 or later, x86_64 or aarch64).
pub fn count<R: Send>(f: impl FnOnce(&Gate<'_>) -> R + Send) -> (R, Syscalls) {
    let on = AtomicBool::new(false);
    let listener = AtomicI32::new(-1);
    let done = AtomicBool::new(false);
    let rec = Record {
        by_nr: (0..MAX_NR).map(|_| AtomicU64::new(0)).collect(),
        total: AtomicU64::new(0),
        beyond: AtomicU64::new(0),
        wake_writes: AtomicU64::new(0),
        other_writes: AtomicU64::new(0),
    };
    let r = std::thread::scope(|s| {
        // The supervisor is started first, by an unfiltered thread: it is
        // not filtered itself.
        let sup = s.spawn(|| supervise(&listener, &done, &on, &rec));
        let measured = s.spawn(|| {
            install(&listener);
            f(&Gate { on: &on })
        });
        let r = measured.join();
        done.store(true, Ordering::SeqCst);
        sup.join().expect("syscall supervisor");
        r
    });
    let r = match r {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    };
    let mut by_nr: Vec<(libc::c_long, u64)> = rec
        .by_nr
        .iter()
        .enumerate()
        .map(|(n, c)| (n as libc::c_long, c.load(Ordering::SeqCst)))
        .filter(|(_, c)| *c > 0)
        .collect();
    let beyond = rec.beyond.load(Ordering::SeqCst);
    if beyond > 0 {
        by_nr.push((-1, beyond));
    }
    let calls = Syscalls {
        by_nr,
        total: rec.total.load(Ordering::SeqCst),
        wake_writes: rec.wake_writes.load(Ordering::SeqCst),
        other_writes: rec.other_writes.load(Ordering::SeqCst),
    };
    (r, calls)
}

/// Installs, on the calling thread only, a filter that hands every native
/// system call to the listener it publishes in `listener`. From here on,
/// each call of this thread waits for the supervisor's answer.
fn install(listener: &AtomicI32) {
    const LD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let stmt = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let mut prog = [
        // seccomp_data.arch (offset 4): a foreign ABI is let through.
        stmt(LD, 4),
        libc::sock_filter {
            code: JEQ,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH,
        },
        stmt(RET, libc::SECCOMP_RET_ALLOW),
        stmt(RET, libc::SECCOMP_RET_USER_NOTIF),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(
        r,
        0,
        "PR_SET_NO_NEW_PRIVS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fprog` points at `prog`, both live for the call; the kernel
    // copies the program.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    assert!(
        fd >= 0,
        "seccomp user notification unavailable: {}",
        std::io::Error::last_os_error()
    );
    // No system call between the filter and this store: the supervisor needs
    // the fd to answer the first one.
    listener.store(fd as i32, Ordering::SeqCst);
}

fn supervise(listener: &AtomicI32, done: &AtomicBool, on: &AtomicBool, rec: &Record) {
    let fd = loop {
        let fd = listener.load(Ordering::SeqCst);
        if fd >= 0 {
            break fd;
        }
        if done.load(Ordering::SeqCst) {
            return; // the measured thread failed before filtering
        }
        std::thread::yield_now();
    };
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a live local.
        let r = unsafe { libc::poll(&mut pfd, 1, 50) };
        if r == 0 || (r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR))
        {
            if done.load(Ordering::SeqCst) {
                break;
            }
            continue;
        }
        assert!(r > 0, "poll: {}", std::io::Error::last_os_error());
        if pfd.revents & libc::POLLIN == 0 {
            break; // POLLHUP: the measured thread is gone
        }
        // SAFETY: all-zero is a valid seccomp_notif (and RECV requires it).
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: `n` is a live, zeroed seccomp_notif the kernel fills.
        let r = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) };
        if r < 0 {
            let e = std::io::Error::last_os_error().raw_os_error();
            if matches!(e, Some(libc::EINTR) | Some(libc::ENOENT)) {
                continue;
            }
            panic!("SECCOMP_IOCTL_NOTIF_RECV: {e:?}");
        }
        if on.load(Ordering::SeqCst) {
            record(rec, &n.data);
        }
        let mut resp = libc::seccomp_notif_resp {
            id: n.id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        // SAFETY: `resp` is a live local the kernel reads.
        let r = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
        if r < 0 {
            // ENOENT: the call was interrupted (a signal) meanwhile.
            let e = std::io::Error::last_os_error().raw_os_error();
            assert_eq!(e, Some(libc::ENOENT), "SECCOMP_IOCTL_NOTIF_SEND");
        }
    }
    // SAFETY: the listener fd is ours and no longer used.
    unsafe { libc::close(fd) };
}

fn record(rec: &Record, d: &libc::seccomp_data) {
    rec.total.fetch_add(1, Ordering::SeqCst);
    match usize::try_from(d.nr).ok().and_then(|n| rec.by_nr.get(n)) {
        Some(c) => c.fetch_add(1, Ordering::SeqCst),
        None => rec.beyond.fetch_add(1, Ordering::SeqCst),
    };
    let nr = libc::c_long::from(d.nr);
    if nr == libc::SYS_write || nr == libc::SYS_sendto {
        if is_wake_fd(d.args[0] as i32, nr == libc::SYS_sendto) {
            rec.wake_writes.fetch_add(1, Ordering::SeqCst);
        } else {
            rec.other_writes.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Whether `fd` (of this process: threads share the table) is a wake-up fd:
/// an eventfd or a pipe written with `write`, or a socket (`sent`). No
/// allocation: the path and the link live on the stack.
fn is_wake_fd(fd: i32, sent: bool) -> bool {
    let mut path = [0u8; 40];
    let prefix = b"/proc/self/fd/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let (mut v, mut i) = (fd.unsigned_abs(), digits.len());
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let d = &digits[i..];
    path[prefix.len()..prefix.len() + d.len()].copy_from_slice(d);
    let mut link = [0u8; 64];
    // SAFETY: `path` is NUL-terminated (zero-filled past the digits); `link`
    // is a live buffer of the given length.
    let n = unsafe { libc::readlink(path.as_ptr().cast(), link.as_mut_ptr().cast(), link.len()) };
    if n <= 0 {
        return false;
    }
    let link = &link[..n as usize];
    if sent {
        return link.starts_with(b"socket:");
    }
    link == b"anon_inode:[eventfd]" || link.starts_with(b"pipe:")
}
