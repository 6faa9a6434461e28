//! Helpers both elements share: the mutex `lock`, the step of every wait,
//! the waits with a deadline ([`retry_until`]), the defaults and property
//! specs they have in common, the socket-path check and the ANY-caps pad
//! template.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

/// Step of every wait, so that `unlock` is seen promptly.
pub(crate) const STEP: Duration = Duration::from_millis(20);

/// Default `timeout` (ms) of both elements.
pub(crate) const DEFAULT_TIMEOUT_MS: u32 = 5000;

/// Default `spin` (µs) of both elements: a returned slot, or the next of
/// closely following frames, usually comes within tens of microseconds.
pub(crate) const DEFAULT_SPIN_US: u32 = 50;

/// Longest socket path a Unix socket address holds (`sun_path` is 108 bytes
/// with its terminating NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// Locks `m`, also when poisoned: a poisoned lock means a panic in another
/// callback, and the data behind these locks is plain.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tries `attempt` on `ctx` until it gives a value, calling `wait` between
/// tries. After each try that gave nothing: `Err(Flushing)` once `unlocked`
/// is set, else `expire`'s value once `deadline` has passed.
pub(crate) fn retry_until<S, T>(
    ctx: &mut S,
    deadline: Instant,
    unlocked: &AtomicBool,
    mut attempt: impl FnMut(&mut S) -> Option<T>,
    expire: impl FnOnce(&mut S) -> T,
    mut wait: impl FnMut(&mut S),
) -> Result<T, gst::FlowError> {
    loop {
        if let Some(done) = attempt(ctx) {
            return Ok(done);
        }
        if unlocked.load(Ordering::Acquire) {
            return Err(gst::FlowError::Flushing);
        }
        if Instant::now() >= deadline {
            return Ok(expire(ctx));
        }
        wait(ctx);
    }
}

/// `Err` with a message naming the limit when `path` cannot be a Unix socket
/// address.
pub(crate) fn check_socket_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("socket-path is not set".into());
    }
    if path.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "socket-path of {} bytes is longer than the {MAX_SOCKET_PATH} bytes a Unix socket path can hold: {path}",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Err("socket-path contains a NUL byte".into());
    }
    Ok(())
}

/// The socket path of the settings, checked, for `start`.
pub(crate) fn socket_path_to_open(path: Option<&str>) -> Result<String, gst::ErrorMessage> {
    let path = path.unwrap_or_default();
    check_socket_path(path).map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
    Ok(path.to_owned())
}

/// Sets `socket-path` from `value`, with a warning (on `cat`, for `obj`)
/// when it cannot be a socket path (`start` refuses it then).
pub(crate) fn set_socket_path(
    path: &mut Option<String>,
    value: &glib::Value,
    cat: gst::DebugCategory,
    obj: &impl IsA<gst::Object>,
) {
    *path = value.get().unwrap_or(None);
    if let Some(Err(e)) = path.as_deref().map(check_socket_path) {
        gst::warning!(cat, obj = obj, "{e}");
    }
}

/// The `socket-path` property.
pub(crate) fn socket_path_pspec(blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecString::builder("socket-path")
        .nick("Socket path")
        .blurb(blurb)
        .mutable_ready()
        .build()
}

/// The `spin` property (µs).
pub(crate) fn spin_pspec(blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecUInt::builder("spin")
        .nick("Spin")
        .blurb(blurb)
        .maximum(1_000_000)
        .default_value(DEFAULT_SPIN_US)
        .mutable_ready()
        .build()
}

/// The read-only `stats` property (a `GstStructure`).
pub(crate) fn stats_pspec(blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
        .nick("Statistics")
        .blurb(blurb)
        .read_only()
        .build()
}

/// `impl GstObjectImpl` and `impl ElementImpl` of an element of this plugin:
/// its metadata (long name, class, description) and its one pad template
/// (always there, ANY caps).
macro_rules! element_impls {
    ($element:ty, $long_name:expr, $class:expr, $description:expr, $pad:expr, $direction:expr) => {
        impl GstObjectImpl for $element {}

        impl ElementImpl for $element {
            fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
                static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                    gst::subclass::ElementMetadata::new(
                        $long_name,
                        $class,
                        $description,
                        "shmring developers",
                    )
                });
                Some(&*META)
            }

            fn pad_templates() -> &'static [gst::PadTemplate] {
                static T: LazyLock<Vec<gst::PadTemplate>> =
                    LazyLock::new(|| vec![$crate::util::any_caps_pad_template($pad, $direction)]);
                T.as_ref()
            }
        }
    };
}
pub(crate) use element_impls;

/// The element's one pad template: `name`, always there, ANY caps.
pub(crate) fn any_caps_pad_template(name: &str, direction: gst::PadDirection) -> gst::PadTemplate {
    gst::PadTemplate::new(
        name,
        direction,
        gst::PadPresence::Always,
        &gst::Caps::new_any(),
    )
    // Not peer data: a constant template with ANY caps is always valid.
    .expect("static pad template")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_over_107_bytes_are_refused_with_the_limit() {
        assert!(check_socket_path(&"a".repeat(107)).is_ok());
        let e = check_socket_path(&"a".repeat(108)).expect_err("accepted");
        assert!(e.contains("107"), "{e}");
        assert!(check_socket_path("").is_err());
    }

    #[test]
    fn retry_until_stops_at_a_value_at_unlock_and_at_the_deadline() {
        let unlocked = AtomicBool::new(false);
        let mut tries = 0;
        let got = retry_until(
            &mut tries,
            Instant::now() + Duration::from_secs(3600),
            &unlocked,
            |n| {
                *n += 1;
                (*n == 3).then_some("done")
            },
            |_| "expired",
            |_| {},
        );
        assert_eq!((got, tries), (Ok("done"), 3));
        let got = retry_until(&mut (), Instant::now(), &unlocked, |_| None, |_| 7, |_| {});
        assert_eq!(got, Ok(7));
        unlocked.store(true, Ordering::Release);
        let got = retry_until(&mut (), Instant::now(), &unlocked, |_| None, |_| 7, |_| {});
        assert_eq!(got, Err(gst::FlowError::Flushing));
    }
}
