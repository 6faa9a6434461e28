//! Child processes with bounded waits, for the tests that run real programs
//! (`make`, `gst-launch-1.0`, `gst-inspect-1.0`, Python): every wait has a
//! deadline, and a child still running when its `Proc` is dropped is killed.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a finished child printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Output {
    /// Panics with the child's output unless it exited with status 0.
    pub fn ok(self, what: &str) -> Self {
        assert!(
            self.status.success(),
            "{what} failed: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A running child whose stdout and stderr are drained by threads.
pub struct Proc {
    what: String,
    child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

fn drain(r: Option<impl std::io::Read + Send + 'static>) -> Option<JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    })
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr captured; `what` names it in failures.
    pub fn spawn(what: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        Proc {
            what: what.to_string(),
            child,
            out,
            err,
        }
    }

    /// Process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` (e.g. `libc::SIGINT`) to the child if it still runs.
    pub fn signal(&mut self, sig: i32) {
        if self.running() {
            // SAFETY: kill(2) on our own child, not reaped yet (we just saw it
            // running and only `wait`/`drop` reap it), so the pid is still ours.
            unsafe { libc::kill(self.child.id() as i32, sig) };
        }
    }

    /// Waits at most `limit` for the child to exit; past it the child is
    /// killed and the test fails with what it printed.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break None,
            }
        };
        let status = status.unwrap_or_else(|| {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let (out, err) = self.texts();
            panic!(
                "{} still running after {limit:?}: killed\n--- stdout\n{out}\n--- stderr\n{err}",
                self.what
            )
        });
        let (stdout, stderr) = self.texts();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Stops the child: SIGINT, then SIGKILL if it has not exited after `grace`.
    pub fn stop(mut self, grace: Duration) -> Output {
        self.signal(libc::SIGINT);
        let deadline = Instant::now() + grace;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait");
        let (stdout, stderr) = self.texts();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    fn texts(&mut self) -> (String, String) {
        let j = |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        (j(self.out.take()), j(self.err.take()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to its end, at most `limit`.
pub fn run(what: &str, cmd: &mut Command, limit: Duration) -> Output {
    Proc::spawn(what, cmd).wait(limit)
}

/// Waits (at most `limit`) until `cond` holds; panics with `what` otherwise.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most `limit`) for `path` to exist.
pub fn wait_for_path(path: &Path, limit: Duration) {
    wait_until(&format!("{} to appear", path.display()), limit, || {
        path.exists()
    });
}

/// A fresh, empty directory for `tag`, removed by the caller when done.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shmring-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Splits a gst-launch description into arguments: whitespace separates them,
/// except inside double quotes (which are removed), so that caps such as
/// `caps="application/x-rtp, media=(string)video"` stay one argument.
pub fn launch_args(desc: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in desc.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    args
}
