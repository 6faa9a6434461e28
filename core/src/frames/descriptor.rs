//! The descriptor: one `#[repr(C)]` Pod record per frame or stream event, and
//! its validation (copy out of shared memory first, then check).

use bytemuck::{Pod, Zeroable};

/// "No value" for timestamps, durations and offsets.
pub const NONE: u64 = u64::MAX;

/// [`Descriptor::storage`]: the payload is in an arena slot.
pub const STORAGE_SLOT: u32 = 0;
/// [`Descriptor::storage`]: the payload is a [`Blob`](super::Blob) that came
/// on the stream's message socket just before the descriptor.
pub const STORAGE_BLOB: u32 = 1;

/// Most planes a [`PlaneLayout`] describes.
pub const MAX_PLANES: usize = 4;

/// How the bytes of a frame are laid out in planes (for GStreamer: a
/// `GstVideoMeta`). `format` and `flags` are opaque to shmring; the receiver
/// checks that every plane lies inside the frame before anything reads
/// through it (it knows the plane heights of the format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaneLayout {
    /// Pixel format (GStreamer's `GstVideoFormat` value).
    pub format: u32,
    /// Flags (GStreamer's `GstVideoFrameFlags`).
    pub flags: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Planes used, at most [`MAX_PLANES`].
    pub n_planes: u32,
    /// Byte offset of each plane in the frame.
    pub offsets: [u64; MAX_PLANES],
    /// Bytes per row of each plane.
    pub strides: [i32; MAX_PLANES],
}

/// Type name of the descriptor ring (part of its type tag).
pub(crate) const DESCRIPTOR_TYPE: &str = "shmring-frame-descriptor-v2";
/// Type name of the return ring of slot numbers.
pub(crate) const RETURN_TYPE: &str = "shmring-frame-return-v2";

/// What a descriptor carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// A frame: bytes `offset..offset + size` of `slot`, with [`FrameMeta`].
    Frame = 1,
    /// The stream's format as a string (for GStreamer: caps), in a slot.
    Caps = 2,
    /// A segment ([`SegmentInfo`] in the descriptor's arguments).
    Segment = 3,
    /// End of stream.
    Eos = 4,
    /// Flush start.
    FlushStart = 5,
    /// Flush stop (`args[0]` = reset time).
    FlushStop = 6,
    /// A gap (`meta.pts`, `meta.duration`).
    Gap = 7,
    /// Stream start, with the stream id as a string in a slot.
    StreamStart = 8,
    /// Tags as a string, in a slot.
    Tags = 9,
    /// Metadata of the next frame as a string (for GStreamer: its metas),
    /// in a slot.
    Metas = 10,
    /// Any other in-band event as a string (for GStreamer: a serialized
    /// downstream event shmring has no kind of its own for), in a slot.
    Event = 11,
    /// The consumer moves to a new arena (`args[0]` slots, `args[1]` bytes
    /// per slot): its memfd came on the message socket just before, and
    /// every slot number from here on is one of the new arena. Sent only
    /// once the consumer holds no slot of the current one (see
    /// [`FrameSender::switch_arena`](super::FrameSender::switch_arena)).
    Arena = 12,
}

impl Kind {
    pub(crate) fn from_wire(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Frame,
            2 => Kind::Caps,
            3 => Kind::Segment,
            4 => Kind::Eos,
            5 => Kind::FlushStart,
            6 => Kind::FlushStop,
            7 => Kind::Gap,
            8 => Kind::StreamStart,
            9 => Kind::Tags,
            10 => Kind::Metas,
            11 => Kind::Event,
            12 => Kind::Arena,
            _ => return None,
        })
    }

    /// Whether this kind refers to bytes in a slot.
    pub fn has_payload(self) -> bool {
        matches!(
            self,
            Kind::Frame | Kind::Caps | Kind::StreamStart | Kind::Tags | Kind::Metas | Kind::Event
        )
    }
}

/// Timing and flags of a frame. Absent values are [`NONE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Presentation timestamp (ns, running time of the producer's clock).
    pub pts: u64,
    /// Decoding timestamp (ns).
    pub dts: u64,
    /// Duration (ns).
    pub duration: u64,
    /// Media-specific offset (e.g. first sample number).
    pub offset: u64,
    /// Media-specific end offset.
    pub offset_end: u64,
    /// Flags, opaque to shmring (the GStreamer pair carries buffer flags).
    pub flags: u32,
}

impl Default for FrameMeta {
    fn default() -> Self {
        FrameMeta {
            pts: NONE,
            dts: NONE,
            duration: NONE,
            offset: NONE,
            offset_end: NONE,
            flags: 0,
        }
    }
}

/// A playback segment, in the shape GStreamer uses, without its types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentInfo {
    /// Format of the positions (GStreamer's `GstFormat` value).
    pub format: u32,
    /// Segment flags.
    pub flags: u32,
    /// Playback rate.
    pub rate: f64,
    /// Rate already applied upstream.
    pub applied_rate: f64,
    /// Running time of `start`.
    pub base: u64,
    /// Offset added to positions.
    pub offset: u64,
    /// Start position.
    pub start: u64,
    /// Stop position ([`NONE`]: none).
    pub stop: u64,
    /// Stream time of `start`.
    pub time: u64,
    /// Current position.
    pub position: u64,
    /// Duration ([`NONE`]: unknown).
    pub duration: u64,
}

impl SegmentInfo {
    /// `GstFormat` value of time (nanoseconds), the format of [`SegmentInfo::time`].
    pub const FORMAT_TIME: u32 = 3;

    /// A time segment from 0, open-ended, at normal rate: what a live
    /// source (an audio callback, a test) announces before its first frame.
    pub fn time() -> Self {
        SegmentInfo {
            format: Self::FORMAT_TIME,
            flags: 0,
            rate: 1.0,
            applied_rate: 1.0,
            base: 0,
            offset: 0,
            start: 0,
            stop: NONE,
            time: 0,
            position: 0,
            duration: NONE,
        }
    }
}

/// The record in the descriptor ring. Every bit pattern is a value (it comes
/// from the peer); [`Descriptor::check`] decides whether it is a valid one.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct Descriptor {
    /// [`Kind`] as a number.
    pub kind: u32,
    /// Frame flags ([`FrameMeta::flags`]).
    pub flags: u32,
    /// Slot of the payload.
    pub slot: u32,
    /// Offset of the payload in the slot.
    pub offset: u32,
    /// Length of the payload.
    pub size: u32,
    /// Where the payload is: [`STORAGE_SLOT`] (bytes `offset..offset + size`
    /// of arena slot `slot`) or [`STORAGE_BLOB`] (a sealed memfd of its own,
    /// `slot` being its blob number; see [`Blob`](super::Blob)).
    pub storage: u32,
    /// Sequence number, +1 per descriptor.
    pub seq: u64,
    /// [`FrameMeta::pts`].
    pub pts: u64,
    /// [`FrameMeta::dts`].
    pub dts: u64,
    /// [`FrameMeta::duration`].
    pub duration: u64,
    /// [`FrameMeta::offset`].
    pub buf_offset: u64,
    /// [`FrameMeta::offset_end`].
    pub buf_offset_end: u64,
    /// Arguments of events ([`SegmentInfo`] fields, flush-stop reset flag);
    /// for a frame, `args[0]` counts the frames the producer skipped for this
    /// consumer since its previous frame.
    pub args: [u64; 11],
}

impl Descriptor {
    pub(crate) fn event(kind: Kind) -> Self {
        let mut d = Descriptor::zeroed();
        d.kind = kind as u32;
        d.set_meta(&FrameMeta::default());
        d
    }

    pub(crate) fn set_meta(&mut self, m: &FrameMeta) {
        self.flags = m.flags;
        self.pts = m.pts;
        self.dts = m.dts;
        self.duration = m.duration;
        self.buf_offset = m.offset;
        self.buf_offset_end = m.offset_end;
    }

    /// Stores a frame's plane layout in `args[1..=9]` (`args[0]` counts
    /// missed frames).
    pub(crate) fn set_layout(&mut self, l: &PlaneLayout) {
        let a = &mut self.args;
        a[1] = 1 | (u64::from(l.n_planes) << 8);
        a[2] = u64::from(l.format) | (u64::from(l.flags) << 32);
        a[3] = u64::from(l.width) | (u64::from(l.height) << 32);
        a[4..8].copy_from_slice(&l.offsets);
        let pair = |x: i32, y: i32| u64::from(x as u32) | (u64::from(y as u32) << 32);
        a[8] = pair(l.strides[0], l.strides[1]);
        a[9] = pair(l.strides[2], l.strides[3]);
    }

    /// A frame's plane layout, if it has one. Only the number of planes is
    /// checked here; the planes' extent is the receiver's to check.
    pub(crate) fn layout(&self) -> Result<Option<PlaneLayout>, String> {
        let a = &self.args;
        if a[1] & 1 == 0 {
            return Ok(None);
        }
        let n_planes = ((a[1] >> 8) & 0xff) as u32;
        if n_planes == 0 || n_planes as usize > MAX_PLANES || a[1] >> 16 != 0 {
            return Err(format!("plane layout word {:#x}", a[1]));
        }
        let lo = |w: u64| w as u32;
        let hi = |w: u64| (w >> 32) as u32;
        let mut offsets = [0u64; MAX_PLANES];
        offsets.copy_from_slice(&a[4..8]);
        Ok(Some(PlaneLayout {
            format: lo(a[2]),
            flags: hi(a[2]),
            width: lo(a[3]),
            height: hi(a[3]),
            n_planes,
            offsets,
            strides: [
                lo(a[8]) as i32,
                hi(a[8]) as i32,
                lo(a[9]) as i32,
                hi(a[9]) as i32,
            ],
        }))
    }

    pub(crate) fn meta(&self) -> FrameMeta {
        FrameMeta {
            pts: self.pts,
            dts: self.dts,
            duration: self.duration,
            offset: self.buf_offset,
            offset_end: self.buf_offset_end,
            flags: self.flags,
        }
    }

    pub(crate) fn set_segment(&mut self, s: &SegmentInfo) {
        self.args = [
            u64::from(s.format) | (u64::from(s.flags) << 32),
            s.rate.to_bits(),
            s.applied_rate.to_bits(),
            s.base,
            s.offset,
            s.start,
            s.stop,
            s.time,
            s.position,
            s.duration,
            0,
        ];
    }

    pub(crate) fn segment(&self) -> Result<SegmentInfo, String> {
        let a = &self.args;
        let rate = f64::from_bits(a[1]);
        let applied_rate = f64::from_bits(a[2]);
        if !rate.is_finite() || rate == 0.0 || !applied_rate.is_finite() || applied_rate == 0.0 {
            return Err(format!("segment rate {rate} / applied rate {applied_rate}"));
        }
        Ok(SegmentInfo {
            format: a[0] as u32,
            flags: (a[0] >> 32) as u32,
            rate,
            applied_rate,
            base: a[3],
            offset: a[4],
            start: a[5],
            stop: a[6],
            time: a[7],
            position: a[8],
            duration: a[9],
        })
    }

    /// Checks a descriptor copied out of shared memory against the arena's
    /// geometry: known kind, and for kinds with a payload, the slot in range and
    /// `offset + size` inside it. Returns the kind.
    pub fn check(&self, slots: u32, slot_size: usize) -> Result<Kind, String> {
        let kind =
            Kind::from_wire(self.kind).ok_or_else(|| format!("unknown kind {}", self.kind))?;
        if kind.has_payload() && self.storage == STORAGE_BLOB {
            // A blob of its own: its size is checked against the memfd that
            // carries it; the slot field numbers the blob.
            if self.offset != 0 {
                return Err(format!("blob payload at offset {}", self.offset));
            }
        } else if kind.has_payload() {
            if self.storage != STORAGE_SLOT {
                return Err(format!("unknown payload storage {}", self.storage));
            }
            if self.slot >= slots {
                return Err(format!("slot {} out of range (0..{slots})", self.slot));
            }
            let end = u64::from(self.offset) + u64::from(self.size);
            if end > slot_size as u64 {
                return Err(format!(
                    "bytes {}..{end} outside the {slot_size}-byte slot",
                    self.offset
                ));
            }
        }
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_is_a_whole_number_of_words() {
        assert_eq!(std::mem::size_of::<Descriptor>(), 160);
    }

    #[test]
    fn check_rejects_what_does_not_fit() {
        let mut d = Descriptor::event(Kind::Frame);
        d.slot = 3;
        d.offset = 100;
        d.size = 924;
        assert_eq!(d.check(4, 1024), Ok(Kind::Frame));
        d.size = 925;
        assert!(d.check(4, 1024).is_err());
        d.size = u32::MAX;
        d.offset = u32::MAX;
        assert!(d.check(4, 1024).is_err());
        d.size = 1;
        d.offset = 0;
        d.slot = 4;
        assert!(d.check(4, 1024).is_err());
        d.kind = 0;
        assert!(d.check(4, 1024).is_err());
        d.kind = 77;
        assert!(d.check(4, 1024).is_err());
        // Events without payload ignore slot fields.
        let mut e = Descriptor::event(Kind::Eos);
        e.slot = u32::MAX;
        assert_eq!(e.check(4, 1024), Ok(Kind::Eos));
    }

    #[test]
    fn segment_round_trips_and_rejects_bad_rates() {
        let s = SegmentInfo {
            format: 3,
            flags: 9,
            rate: -2.0,
            applied_rate: 1.0,
            base: 1,
            offset: 2,
            start: 3,
            stop: NONE,
            time: 5,
            position: 6,
            duration: 7,
        };
        let mut d = Descriptor::event(Kind::Segment);
        d.set_segment(&s);
        assert_eq!(d.segment(), Ok(s));
        d.args[1] = f64::NAN.to_bits();
        assert!(d.segment().is_err());
        d.args[1] = 0f64.to_bits();
        assert!(d.segment().is_err());
    }
}
