//! The `shmringsrc` subclass of `GstPushSrc`.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use shmring::frames::{self, FrameConfig, FrameReceiver, Received, NONE};

use crate::Error;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringsrc",
        gst::DebugColorFlags::empty(),
        Some("shmring shared-memory source"),
    )
});

const DEFAULT_TIMEOUT_MS: u32 = 5000;
/// Step of every wait, so that `unlock` is seen promptly.
const STEP: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
struct Settings {
    socket_path: Option<String>,
    timeout_ms: u32,
    is_live: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            socket_path: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            is_live: false,
        }
    }
}

#[derive(Default)]
pub struct ShmringSrc {
    settings: Mutex<Settings>,
    rx: Mutex<Option<FrameReceiver>>,
    unlocked: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for ShmringSrc {
    const NAME: &'static str = "GstShmringSrc";
    type Type = super::ShmringSrc;
    type ParentType = gst_base::PushSrc;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic in another callback; the data is plain.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ObjectImpl for ShmringSrc {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_format(gst::Format::Time);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("socket-path")
                    .nick("Socket path")
                    .blurb("Unix socket path of the shmringsink to receive from")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout")
                    .blurb("Milliseconds to keep trying to connect (the sink may start later)")
                    .minimum(1)
                    .default_value(DEFAULT_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb("Act as a live source (with do-timestamp: stamp buffers on arrival)")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "socket-path" => s.socket_path = value.get().unwrap_or(None),
            "timeout" => s.timeout_ms = value.get().unwrap_or(DEFAULT_TIMEOUT_MS),
            "is-live" => {
                s.is_live = value.get().unwrap_or(false);
                self.obj().set_live(s.is_live);
            }
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "socket-path" => s.socket_path.to_value(),
            "timeout" => s.timeout_ms.to_value(),
            "is-live" => s.is_live.to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for ShmringSrc {}

impl ElementImpl for ShmringSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "shmring source",
                "Source",
                "Receives buffers, caps and events from a shmringsink in another process; buffers wrap the shared memory (no copy)",
                "shmring developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &gst::Caps::new_any(),
            )
            .expect("static pad template")]
        });
        T.as_ref()
    }
}

fn clock(ns: u64) -> Option<gst::ClockTime> {
    (ns != NONE).then(|| gst::ClockTime::from_nseconds(ns))
}

impl ShmringSrc {
    fn fail(&self, e: &Error) -> gst::FlowError {
        match e {
            Error::Shmring(shmring::Error::Disconnected) => {
                gst::element_imp_error!(self, gst::ResourceError::Read, ("the sink went away"));
            }
            e => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{e}"));
            }
        }
        gst::FlowError::Error
    }
}

impl BaseSrcImpl for ShmringSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = lock(&self.settings).clone();
        let path = s.socket_path.ok_or_else(|| {
            gst::error_msg!(gst::ResourceError::Settings, ["socket-path is not set"])
        })?;
        let cfg = FrameConfig::new(1, 64)
            .handshake_timeout(Duration::from_millis(u64::from(s.timeout_ms)));
        let rx = frames::connect(&path, &cfg).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ["cannot connect to {path}: {e}"]
            )
        })?;
        gst::info!(CAT, imp = self, "connected to {path}");
        *lock(&self.rx) = Some(rx);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.rx) = None;
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(true, Ordering::Release);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(false, Ordering::Release);
        Ok(())
    }
}

impl PushSrcImpl for ShmringSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        loop {
            let msg = {
                let mut guard = lock(&self.rx);
                let rx = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
                match rx.recv(Some(STEP)) {
                    Ok(m) => m,
                    Err(shmring::Error::Timeout) => {
                        if self.unlocked.load(Ordering::Acquire) {
                            return Err(gst::FlowError::Flushing);
                        }
                        continue;
                    }
                    Err(e) => return Err(self.fail(&e.into())),
                }
            };
            gst::trace!(CAT, imp = self, "received {msg:?}");
            match msg {
                Received::Frame(f) => {
                    let m = *f.meta();
                    let (held, slots) = match lock(&self.rx).as_ref() {
                        Some(rx) => (rx.frames_held(), rx.arena().slots() as usize),
                        None => (0, 1),
                    };
                    // Zero copy, unless downstream keeps so many buffers (a
                    // filesink batching small ones, a deep queue) that the
                    // sink would run out of slots: then copy and return at once.
                    let mut buffer = if held * 2 > slots {
                        gst::Buffer::from_slice(f.bytes().to_vec())
                    } else {
                        gst::Buffer::from_slice(f)
                    };
                    let b = buffer.get_mut().ok_or(gst::FlowError::Error)?;
                    b.set_pts(clock(m.pts));
                    b.set_dts(clock(m.dts));
                    b.set_duration(clock(m.duration));
                    b.set_offset(m.offset);
                    b.set_offset_end(m.offset_end);
                    b.set_flags(gst::BufferFlags::from_bits_truncate(m.flags));
                    return Ok(CreateSuccess::NewBuffer(buffer));
                }
                Received::Caps(s) => {
                    let caps = gst::Caps::from_str(&s)
                        .map_err(|_| self.fail(&Error::BadCaps(s.clone())))?;
                    gst::debug!(CAT, imp = self, "caps from the sink: {caps}");
                    if self.obj().set_caps(&caps).is_err() {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("downstream refused the sink's caps {caps}")
                        );
                        return Err(gst::FlowError::NotNegotiated);
                    }
                }
                Received::Eos => return Err(gst::FlowError::Eos),
                Received::Gap { pts, duration } => {
                    if let Some(pts) = clock(pts) {
                        let ev = gst::event::Gap::builder(pts)
                            .duration(clock(duration))
                            .build();
                        let _ = self.obj().src_pad().push_event(ev);
                    }
                }
                // The base class makes its own stream-start and segment, and
                // flushing across processes is left to each pipeline.
                // Tags are not forwarded yet (gstreamer-rs has no parser for
                // their string form).
                Received::StreamStart(_)
                | Received::Tags(_)
                | Received::Segment(_)
                | Received::FlushStart
                | Received::FlushStop { .. } => {}
            }
        }
    }
}
