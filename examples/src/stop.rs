//! Stop on SIGINT or SIGTERM: the example programs poll [`requested`] and end
//! with their final report instead of dying mid-sentence; [`run_main`] is the
//! `main` that sets this up.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP.store(true, Ordering::Relaxed);
}

/// Installs the handlers (call once, at start).
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is
        // async-signal-safe; the zeroed sigaction with an empty mask and no
        // flags is valid.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether SIGINT or SIGTERM arrived (or [`request`] was called).
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Asks every loop polling [`requested`] to stop.
pub fn request() {
    STOP.store(true, Ordering::Relaxed);
}

/// The `main` of an example program: installs the stop signals, parses the
/// arguments (exit 2 on a usage error) and runs (exit 1 on an error), each
/// error printed after the program's name.
pub fn run_main<A>(
    program: &str,
    parse: impl FnOnce() -> Result<A, String>,
    run: impl FnOnce(&A) -> Result<(), Box<dyn std::error::Error>>,
) {
    install();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("{program}: {e}");
        std::process::exit(1);
    }
}
