//! `Segment::from_fd` against a hostile peer process that changes the memfd
//! between our checks. A test hook runs at that point (right after the first
//! of the two reads, the seals, before the second, the size), and asks a
//! forked peer process that shares the memfd to act there, deterministically.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use memfd::{FileSeal, MemfdOptions};

use super::*;

type Hook = Box<dyn FnOnce(BorrowedFd<'_>)>;

thread_local! {
    /// Called once by the next `from_fd` on this thread, between its checks.
    static BETWEEN_CHECKS: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// The hook point of `Segment::from_fd`.
pub(super) fn between_checks(fd: BorrowedFd<'_>) {
    if let Some(hook) = BETWEEN_CHECKS.with(|h| h.borrow_mut().take()) {
        hook(fd);
    }
}

const LEN: usize = 64 * 1024;
const SHRUNK: libc::off_t = 4096;

fn memfd(seals: &[FileSeal]) -> OwnedFd {
    let m = MemfdOptions::default()
        .close_on_exec(true)
        .allow_sealing(true)
        .create("hostile-peer")
        .expect("memfd");
    m.as_file().set_len(LEN as u64).expect("set_len");
    m.add_seals(seals).expect("seals");
    m.into_file().into()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh fds that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A peer process sharing the memfd. When told to go, it shrinks the memfd
/// to one page, then seals it against shrinking and growing (what a hostile
/// sender does to pass the seal check with a file shorter than the size we
/// read), and answers with the errno of its `ftruncate` (0 if it shrank).
struct Peer {
    pid: libc::pid_t,
    go: OwnedFd,
    done: OwnedFd,
}

impl Peer {
    fn fork(memfd: BorrowedFd<'_>) -> Peer {
        let (go_r, go_w) = pipe();
        let (done_r, done_w) = pipe();
        let (fd, go, done) = (memfd.as_raw_fd(), go_r.as_raw_fd(), done_w.as_raw_fd());
        let (ours_go, ours_done) = (go_w.as_raw_fd(), done_r.as_raw_fd());
        // SAFETY: the child runs only async-signal-safe calls (read, ftruncate,
        // fcntl, write, _exit) on fds it inherited, touching no Rust state, and
        // never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: see above; every buffer is a live local.
            unsafe {
                // Our copies of the parent's ends: closed, so that a parent that
                // goes away unblocks the read below.
                libc::close(ours_go);
                libc::close(ours_done);
                let mut b = [0u8; 1];
                if libc::read(go, b.as_mut_ptr().cast(), 1) != 1 {
                    libc::_exit(1);
                }
                let errno: i32 = if libc::ftruncate(fd, SHRUNK) == 0 {
                    0
                } else {
                    *libc::__errno_location()
                };
                libc::fcntl(fd, libc::F_ADD_SEALS, REQUIRED_SEALS);
                let e = errno.to_ne_bytes();
                libc::write(done, e.as_ptr().cast(), e.len());
                libc::_exit(0);
            }
        }
        Peer {
            pid,
            go: go_w,
            done: done_r,
        }
    }

    /// Lets the peer act and waits until it did; returns its `ftruncate` errno.
    fn act(&self) -> i32 {
        let b = [1u8];
        // SAFETY: one byte from a live buffer into our pipe.
        let n = unsafe { libc::write(self.go.as_raw_fd(), b.as_ptr().cast(), 1) };
        assert_eq!(n, 1);
        let mut e = [0u8; 4];
        // SAFETY: four bytes into a live buffer from our pipe.
        let n = unsafe { libc::read(self.done.as_raw_fd(), e.as_mut_ptr().cast(), 4) };
        assert_eq!(n, 4, "peer answered");
        i32::from_ne_bytes(e)
    }

    fn wait(&self) {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a live local.
        assert_eq!(unsafe { libc::waitpid(self.pid, &mut status, 0) }, self.pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}

fn size_of_file(fd: BorrowedFd<'_>) -> libc::off_t {
    // SAFETY: fstat writes into the zeroed struct we pass; the fd is open.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd.as_raw_fd(), &mut st), 0);
        st.st_size
    }
}

/// Maps all of `seg` and reads a byte of every page: `SIGBUS` (and the end of
/// this test process) if the file is shorter than the segment.
fn touch_every_page(seg: &Segment) {
    let map = seg.map(seg.len(), Access::ReadOnly).expect("map");
    let mut sum = 0u8;
    for off in (0..map.len()).step_by(page_size()) {
        // SAFETY: inside the mapping; a volatile read of shared memory.
        sum ^= unsafe { std::ptr::read_volatile(map.as_ptr().add(off)) };
    }
    std::hint::black_box(sum);
}

/// The attack of issue 20: an unsealed memfd of the right size; right after
/// we read its seals, the peer shrinks it to one page and only then seals it.
/// Checking the size first and the seals second would have accepted it (size
/// right, seals right) and mapped past its end. Seals first: refused, and the
/// process never touches a page that is not there.
#[test]
fn peer_that_shrinks_and_seals_between_our_checks_is_refused_without_sigbus() {
    let fd = memfd(&[]);
    let peer = Rc::new(Peer::fork(fd.as_fd()));
    let p = peer.clone();
    BETWEEN_CHECKS
        .with(|h| *h.borrow_mut() = Some(Box::new(move |_| assert_eq!(p.act(), 0, "peer shrank"))));
    let mine = fd.try_clone().expect("dup");
    let result = Segment::from_fd(fd, LEN);
    // The window was used: by now the file is one page long and sealed.
    assert_eq!(size_of_file(mine.as_fd()), SHRUNK);
    assert_eq!(
        seals_of(mine.as_fd()).expect("seals") & REQUIRED_SEALS,
        REQUIRED_SEALS
    );
    match result {
        Err(Error::BadSegment(m)) => assert!(m.contains("lacks the shrink/grow seals"), "{m}"),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(seg) => {
            touch_every_page(&seg);
            panic!("a memfd shrunk under our checks was accepted");
        }
    }
    peer.wait();
}

/// The other order of events: the memfd is sealed when we read its seals, so
/// the same peer can no longer shrink it (`EPERM`) and what we accept stays
/// fully backed.
#[test]
fn sealed_memfd_cannot_shrink_after_our_seal_check() {
    let fd = memfd(&[FileSeal::SealShrink, FileSeal::SealGrow]);
    let peer = Rc::new(Peer::fork(fd.as_fd()));
    let p = peer.clone();
    BETWEEN_CHECKS.with(|h| {
        *h.borrow_mut() = Some(Box::new(move |_| {
            assert_eq!(p.act(), libc::EPERM, "a sealed memfd cannot shrink")
        }))
    });
    let seg = Segment::from_fd(fd, LEN).expect("an honest sealed memfd is accepted");
    assert_eq!(size_of_file(seg.as_fd()), LEN as libc::off_t);
    touch_every_page(&seg);
    peer.wait();
}
