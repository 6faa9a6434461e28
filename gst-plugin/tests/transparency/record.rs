//! What the element after the split point receives, recorded by a pad probe
//! on its sink pad, and the comparison of two recordings.
//!
//! Recorded, in order: every buffer (its content as downstream reads it, its
//! timestamps, offsets, flags and the metas that matter) and every serialized
//! downstream event (caps compared as caps, segment, tags, stream-start, gap,
//! EOS, TOC, custom events, anything else by its type).
//!
//! The normalisations, each the least that lets a pipeline split in two
//! processes compare equal to the same pipeline in one (see `normalise`):
//! 1. The stream-start's stream-id and group-id values are not compared:
//!    the receiver is a new source in another pipeline and names its own
//!    stream (its flags, and whether it has a group-id, are compared: a
//!    demuxer downstream acts on that).
//! 2. The segment's `position` is not compared: it is a running field that
//!    an element may update as it goes; every other field is.
//! 3. `DISCONT` on the first buffer is not compared: the receiver's first
//!    buffer is a discontinuity for its pipeline whether or not the
//!    producer's was.
//! 4. `TAG_MEMORY` is not compared: it says a buffer's memory was replaced
//!    (a buffer pool's bookkeeping), not something about the stream.
//! 5. Raw video content is compared row by row through `VideoFrame` (the
//!    bytes a downstream element reads for each visible row of each plane),
//!    so the same picture in another stride or plane offset compares equal;
//!    a `GstVideoMeta` is compared by what it describes (format, size,
//!    planes), not by its strides and offsets.
//! 6. Per case (`Case::vary_headers`): buffers flagged `HEADER` and the
//!    caps' `streamheader` are compared by flags only, not content nor size,
//!    for muxers that write the date and a random UID in their header
//!    (matroskamux/webmmux) so that two runs differ there anyway (the UID's
//!    encoding is one byte shorter now and then); the byte offsets of the
//!    buffers after it shift with that size, so they are not compared
//!    either; for the same reason a tag list's `datetime` (a demuxer reports
//!    that date).
//! 7. A tag list's `encoder-version` is not compared: x265enc (Debian 12)
//!    puts a value there that changes from process to process.

use std::fmt;
use std::hash::Hasher as _;
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_video::prelude::*;

/// One thing the observed element received.
#[derive(Debug, Clone)]
pub enum Item {
    Buffer(Buf),
    Event(Ev),
}

/// A buffer as downstream sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Buf {
    pub content: Content,
    pub pts: Option<gst::ClockTime>,
    pub dts: Option<gst::ClockTime>,
    pub duration: Option<gst::ClockTime>,
    pub offset: u64,
    pub offset_end: u64,
    pub flags: gst::BufferFlags,
    /// The metas that matter, each described (sorted).
    pub metas: Vec<String>,
}

/// A buffer's content: a description of how it was read, its length and a
/// hash of what was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub how: String,
    pub len: usize,
    pub hash: u64,
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} bytes hash {:016x}", self.how, self.len, self.hash)
    }
}

/// A serialized downstream event.
#[derive(Debug, Clone)]
pub enum Ev {
    StreamStart(String),
    Caps(gst::Caps),
    Segment(String),
    Tag(String),
    Gap(String),
    Eos,
    Toc(String),
    Custom(String),
    Other(String),
}

impl Ev {
    fn kind(&self) -> &'static str {
        match self {
            Ev::StreamStart(_) => "stream-start",
            Ev::Caps(_) => "caps",
            Ev::Segment(_) => "segment",
            Ev::Tag(_) => "tag",
            Ev::Gap(_) => "gap",
            Ev::Eos => "eos",
            Ev::Toc(_) => "toc",
            Ev::Custom(_) => "custom",
            Ev::Other(_) => "other",
        }
    }

    fn same(&self, o: &Ev) -> bool {
        match (self, o) {
            (Ev::Caps(a), Ev::Caps(b)) => a == b,
            (Ev::StreamStart(a), Ev::StreamStart(b))
            | (Ev::Segment(a), Ev::Segment(b))
            | (Ev::Tag(a), Ev::Tag(b))
            | (Ev::Gap(a), Ev::Gap(b))
            | (Ev::Toc(a), Ev::Toc(b))
            | (Ev::Custom(a), Ev::Custom(b))
            | (Ev::Other(a), Ev::Other(b)) => a == b,
            (Ev::Eos, Ev::Eos) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::Caps(c) => write!(f, "caps {c}"),
            Ev::Eos => write!(f, "eos"),
            Ev::StreamStart(s)
            | Ev::Segment(s)
            | Ev::Tag(s)
            | Ev::Gap(s)
            | Ev::Toc(s)
            | Ev::Custom(s)
            | Ev::Other(s) => write!(f, "{} {s}", self.kind()),
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Event(e) => write!(f, "event {e}"),
            Item::Buffer(b) => write!(
                f,
                "buffer pts {:?} dts {:?} dur {:?} off {} off_end {} flags {:?} metas {:?} content {}",
                b.pts.map(|t| t.nseconds()),
                b.dts.map(|t| t.nseconds()),
                b.duration.map(|t| t.nseconds()),
                b.offset,
                b.offset_end,
                b.flags,
                b.metas,
                b.content
            ),
        }
    }
}

/// What a probe recorded, shared with the test thread.
#[derive(Default)]
pub struct Recording {
    pub items: Vec<Item>,
    /// The caps of the stream at the observed pad, as the probe saw them.
    caps: Option<gst::Caps>,
}

impl Recording {
    pub fn buffers(&self) -> impl Iterator<Item = &Buf> {
        self.items.iter().filter_map(|i| match i {
            Item::Buffer(b) => Some(b),
            Item::Event(_) => None,
        })
    }
}

pub type Shared = Arc<Mutex<Recording>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Recording> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the recording probe on `pad` (the sink pad of the observed
/// element). Allocation queries passing the pad get `GstVideoMeta` and
/// `GstVideoCropMeta` added, as a meta-aware consumer (a video sink) would
/// answer: upstream may then hand over padded or cropped buffers.
pub fn install(pad: &gst::Pad) -> Shared {
    let rec: Shared = Arc::default();
    let r = rec.clone();
    pad.add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::BUFFER_LIST
            | gst::PadProbeType::EVENT_DOWNSTREAM
            | gst::PadProbeType::QUERY_DOWNSTREAM,
        move |_pad, info| {
            match &mut info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    let mut g = lock(&r);
                    let item = buffer(b, g.caps.as_ref());
                    g.items.push(Item::Buffer(item));
                }
                Some(gst::PadProbeData::BufferList(l)) => {
                    let mut g = lock(&r);
                    for b in l.iter() {
                        let item = buffer(b, g.caps.as_ref());
                        g.items.push(Item::Buffer(item));
                    }
                }
                Some(gst::PadProbeData::Event(e)) if e.is_serialized() => {
                    let mut g = lock(&r);
                    if let gst::EventView::Caps(c) = e.view() {
                        g.caps = Some(c.caps_owned());
                    }
                    if let Some(ev) = event(e) {
                        g.items.push(Item::Event(ev));
                    }
                }
                Some(gst::PadProbeData::Query(q)) => {
                    if let gst::QueryViewMut::Allocation(a) = q.view_mut() {
                        let (caps, _) = a.get_owned();
                        let video = caps
                            .as_ref()
                            .and_then(|c| c.structure(0))
                            .is_some_and(|s| s.name() == "video/x-raw");
                        if video {
                            if a.find_allocation_meta::<gst_video::VideoMeta>().is_none() {
                                a.add_allocation_meta::<gst_video::VideoMeta>(None);
                            }
                            if a.find_allocation_meta::<gst_video::VideoCropMeta>()
                                .is_none()
                            {
                                a.add_allocation_meta::<gst_video::VideoCropMeta>(None);
                            }
                        }
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    rec
}

fn hasher() -> std::hash::DefaultHasher {
    std::hash::DefaultHasher::new()
}

fn event(e: &gst::Event) -> Option<Ev> {
    Some(match e.view() {
        gst::EventView::StreamStart(s) => Ev::StreamStart(format!(
            "flags {:?} group-id {}",
            s.stream_flags(),
            if s.group_id().is_some() {
                "set"
            } else {
                "none"
            }
        )),
        gst::EventView::Caps(c) => Ev::Caps(c.caps_owned()),
        gst::EventView::Segment(s) => {
            let seg = s.segment();
            Ev::Segment(format!(
                "format {:?} rate {} applied {} flags {:?} base {} offset {} start {} stop {} time {} duration {}",
                seg.format(),
                seg.rate(),
                seg.applied_rate(),
                seg.flags(),
                seg.base().value(),
                seg.offset().value(),
                seg.start().value(),
                seg.stop().value(),
                seg.time().value(),
                seg.duration().value(),
            ))
        }
        gst::EventView::Tag(t) => Ev::Tag(t.tag().to_string()),
        gst::EventView::Gap(g) => {
            let (pts, dur) = g.get();
            Ev::Gap(format!(
                "pts {} dur {:?} flags {:?}",
                pts.nseconds(),
                dur.map(|d| d.nseconds()),
                g.gap_flags()
            ))
        }
        gst::EventView::Eos(_) => Ev::Eos,
        gst::EventView::Toc(t) => {
            let (toc, updated) = t.toc();
            Ev::Toc(format!("{toc:?} updated {updated}"))
        }
        gst::EventView::CustomDownstream(_) | gst::EventView::CustomDownstreamSticky(_) => {
            Ev::Custom(format!(
                "{:?} {}",
                e.type_(),
                e.structure().map(|s| s.to_string()).unwrap_or_default()
            ))
        }
        // By what it lists (the collection is an object with a name of
        // this process).
        gst::EventView::StreamCollection(c) => {
            let col = c.stream_collection();
            let streams: Vec<String> = col
                .iter()
                .map(|st| {
                    format!(
                        "{:?} {}",
                        st.stream_type(),
                        st.caps().map(|c| c.to_string()).unwrap_or_default()
                    )
                })
                .collect();
            Ev::Other(format!("StreamCollection [{}]", streams.join("; ")))
        }
        // Its group-id value is a counter of the process that made it.
        gst::EventView::StreamGroupDone(_) => Ev::Other("StreamGroupDone".into()),
        // Flushes come from this pipeline's own seeks, not from the stream.
        gst::EventView::FlushStop(_) => return None,
        _ => Ev::Other(format!(
            "{:?} {}",
            e.type_(),
            e.structure().map(|s| s.to_string()).unwrap_or_default()
        )),
    })
}

fn buffer(b: &gst::BufferRef, caps: Option<&gst::Caps>) -> Buf {
    let s = caps.and_then(|c| c.structure(0));
    let features_system = caps
        .and_then(|c| c.features(0))
        .is_none_or(|f| f.is_any() || f.contains("memory:SystemMemory") || f.is_empty());
    let name = s.map(|s| s.name().as_str()).unwrap_or("");
    let content = match (name, features_system) {
        ("video/x-raw", true) => video_content(b, caps),
        ("audio/x-raw", true) => audio_content(b, caps),
        _ => bytes_content(b),
    };
    let mut metas = Vec::new();
    if let Some(m) = b.meta::<gst_video::VideoCropMeta>() {
        metas.push(format!("crop {:?}", m.rect()));
    }
    for m in b.iter_meta::<gst::ReferenceTimestampMeta>() {
        metas.push(format!(
            "reference-timestamp {} ts {} dur {:?}",
            m.reference(),
            m.timestamp().nseconds(),
            m.duration().map(|d| d.nseconds())
        ));
    }
    if let Some(m) = b.meta::<gst_audio::AudioMeta>() {
        let info = m.info();
        metas.push(format!(
            "audio {:?} {} ch {} samples layout {:?}",
            info.format(),
            info.channels(),
            m.samples(),
            info.layout()
        ));
    }
    if let Some(m) = b.meta::<gst_video::VideoTimeCodeMeta>() {
        metas.push(format!("timecode {}", m.tc()));
    }
    // Other metas are not compared: GStreamer 1.22 has no generic meta
    // serialisation, so only the metas above are part of the contract
    // (GstVideoMeta is compared through the content).
    metas.sort();
    Buf {
        content,
        pts: b.pts(),
        dts: b.dts(),
        duration: b.duration(),
        offset: b.offset(),
        offset_end: b.offset_end(),
        flags: b.flags(),
        metas,
    }
}

fn bytes_content(b: &gst::BufferRef) -> Content {
    match b.map_readable() {
        Ok(m) => {
            let mut h = hasher();
            h.write(&m);
            Content {
                how: "bytes".into(),
                len: m.len(),
                hash: h.finish(),
            }
        }
        Err(_) => Content {
            how: "unmappable".into(),
            len: b.size(),
            hash: 0,
        },
    }
}

/// The bytes a downstream element reads from a raw video frame: for each
/// plane, each row, the bytes its components occupy (not the stride's
/// padding), mapped through `VideoFrame` (so with the buffer's `GstVideoMeta`
/// if it has one).
fn video_content(b: &gst::BufferRef, caps: Option<&gst::Caps>) -> Content {
    let Some(info) = caps.and_then(|c| gst_video::VideoInfo::from_caps(c).ok()) else {
        return bytes_content(b);
    };
    let frame = match gst_video::VideoFrameRef::from_buffer_ref_readable(b, &info) {
        Ok(f) => f,
        Err(e) => {
            return Content {
                how: format!(
                    "video frame does not map ({e}): buffer of {} bytes",
                    b.size()
                ),
                len: b.size(),
                hash: 0,
            }
        }
    };
    let fi = frame.format_info();
    let (w, h) = (frame.width(), frame.height());
    let mut hs = hasher();
    let mut len = 0;
    for p in 0..frame.n_planes() {
        let comps: Vec<usize> = (0..fi.n_components() as usize)
            .filter(|&c| fi.plane()[c] == p)
            .collect();
        let Some(&c0) = comps.first() else { continue };
        let rows = fi.scale_height(c0 as u8, h) as usize;
        let stride = frame.plane_stride()[p as usize].unsigned_abs() as usize;
        // The bytes of a row that hold a component of a pixel of the
        // picture: not the stride's padding, nor the unused half of the
        // last macropixel of an odd-width packed 4:2:2 row.
        let mut mask = Vec::new();
        for &c in &comps {
            let cw = fi.scale_width(c as u8, w) as usize;
            let ps = fi.pixel_stride()[c].max(0) as usize;
            let bytes = (fi.depth()[c] as usize).div_ceil(8);
            for x in 0..cw {
                let at = fi.poffset()[c] as usize + ps * x;
                if mask.len() < at + bytes {
                    mask.resize(at + bytes, false);
                }
                mask[at..at + bytes].fill(true);
            }
        }
        let row_bytes = mask.len().min(stride);
        let dense = mask.iter().all(|&m| m);
        let Ok(data) = frame.plane_data(p) else {
            return Content {
                how: format!("plane {p} does not map"),
                len: b.size(),
                hash: 0,
            };
        };
        let mut picked = Vec::with_capacity(row_bytes);
        for r in 0..rows {
            let start = r * stride;
            let Some(row) = data.get(start..start + row_bytes) else {
                return Content {
                    how: format!("plane {p} row {r} outside the buffer"),
                    len: b.size(),
                    hash: 0,
                };
            };
            if dense {
                hs.write(row);
                len += row_bytes;
            } else {
                picked.clear();
                picked.extend(row.iter().zip(&mask).filter(|(_, &m)| m).map(|(v, _)| *v));
                hs.write(&picked);
                len += picked.len();
            }
        }
    }
    Content {
        how: format!(
            "video {} {}x{} {} planes",
            frame.format().to_str(),
            w,
            h,
            frame.n_planes()
        ),
        len,
        hash: hs.finish(),
    }
}

/// Raw audio: interleaved as bytes; planar mapped through `AudioBuffer` (so
/// with the buffer's `GstAudioMeta`), plane by plane.
fn audio_content(b: &gst::BufferRef, caps: Option<&gst::Caps>) -> Content {
    let Some(info) = caps.and_then(|c| gst_audio::AudioInfo::from_caps(c).ok()) else {
        return bytes_content(b);
    };
    if info.layout() == gst_audio::AudioLayout::Interleaved {
        return bytes_content(b);
    }
    if b.meta::<gst_audio::AudioMeta>().is_none() {
        // Planar audio needs a GstAudioMeta to be read at all.
        let mut c = bytes_content(b);
        c.how = "planar audio without GstAudioMeta, as bytes".into();
        return c;
    }
    let ab = match gst_audio::AudioBufferRef::from_buffer_ref_readable(b, &info) {
        Ok(a) => a,
        Err(e) => {
            return Content {
                how: format!("audio buffer does not map ({e}): {} bytes", b.size()),
                len: b.size(),
                hash: 0,
            }
        }
    };
    let mut hs = hasher();
    let mut len = 0;
    for p in 0..ab.n_planes() {
        match ab.plane_data(p) {
            Ok(d) => {
                hs.write(d);
                len += d.len();
            }
            Err(_) => {
                return Content {
                    how: format!("audio plane {p} does not map"),
                    len: b.size(),
                    hash: 0,
                }
            }
        }
    }
    Content {
        how: format!(
            "planar audio {} samples {} planes",
            ab.n_samples(),
            ab.n_planes()
        ),
        len,
        hash: hs.finish(),
    }
}

/// Per-case comparison options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Norm {
    /// Compare `HEADER` buffers and caps `streamheader` by flags only, and no
    /// byte offsets.
    pub vary_headers: bool,
}

fn normalise_caps(c: &gst::Caps, norm: Norm) -> gst::Caps {
    if !norm.vary_headers {
        return c.clone();
    }
    let mut c = c.clone();
    for s in c.make_mut().iter_mut() {
        if let Ok(arr) = s.get::<gst::Array>("streamheader") {
            let sizes: Vec<String> = arr
                .iter()
                .map(|v| {
                    v.get::<gst::Buffer>()
                        .map(|b| format!("{:?}", b.flags() - gst::BufferFlags::TAG_MEMORY))
                        .unwrap_or_else(|_| "?".into())
                })
                .collect();
            s.set("streamheader", sizes.join(","));
        }
    }
    c
}

/// A tag list's text without the field that starts with `field`.
fn without_field(t: &str, field: &str) -> String {
    let Some(i) = t.find(field) else {
        return t.to_string();
    };
    let rest = &t[i..];
    let end = rest.find([',', ';']).map_or(rest.len(), |e| e + 1);
    format!("{}{}", &t[..i], rest[end..].trim_start())
}

/// Applies the normalisations listed at the top of this file.
pub fn normalise(items: &[Item], norm: Norm) -> Vec<Item> {
    let mut first = true;
    items
        .iter()
        .map(|i| match i {
            Item::Buffer(b) => {
                let mut b = b.clone();
                b.flags.remove(gst::BufferFlags::TAG_MEMORY);
                if first {
                    b.flags.remove(gst::BufferFlags::DISCONT);
                    first = false;
                }
                if norm.vary_headers {
                    if b.flags.contains(gst::BufferFlags::HEADER) {
                        b.content.hash = 0;
                        b.content.len = 0;
                        b.content.how = "header (content and size not compared)".into();
                    }
                    (b.offset, b.offset_end) = (0, 0);
                }
                Item::Buffer(b)
            }
            Item::Event(Ev::Caps(c)) => Item::Event(Ev::Caps(normalise_caps(c, norm))),
            Item::Event(Ev::Tag(t)) => {
                let t = without_field(t, "encoder-version=(uint)");
                Item::Event(Ev::Tag(if norm.vary_headers {
                    without_field(&t, "datetime=(datetime)")
                } else {
                    t
                }))
            }
            Item::Event(e) => Item::Event(e.clone()),
        })
        .collect()
}

/// The differing fields of two items, empty if they are the same.
fn diff_items(a: &Item, b: &Item) -> Vec<String> {
    match (a, b) {
        (Item::Buffer(x), Item::Buffer(y)) => {
            let mut d = Vec::new();
            if x.content != y.content {
                d.push(format!("content: {} vs {}", x.content, y.content));
            }
            let t = |v: Option<gst::ClockTime>| v.map(|t| t.nseconds());
            if x.pts != y.pts {
                d.push(format!("pts: {:?} vs {:?}", t(x.pts), t(y.pts)));
            }
            if x.dts != y.dts {
                d.push(format!("dts: {:?} vs {:?}", t(x.dts), t(y.dts)));
            }
            if x.duration != y.duration {
                d.push(format!(
                    "duration: {:?} vs {:?}",
                    t(x.duration),
                    t(y.duration)
                ));
            }
            if x.offset != y.offset {
                d.push(format!("offset: {} vs {}", x.offset, y.offset));
            }
            if x.offset_end != y.offset_end {
                d.push(format!("offset_end: {} vs {}", x.offset_end, y.offset_end));
            }
            if x.flags != y.flags {
                d.push(format!("flags: {:?} vs {:?}", x.flags, y.flags));
            }
            if x.metas != y.metas {
                d.push(format!("metas: {:?} vs {:?}", x.metas, y.metas));
            }
            d
        }
        (Item::Event(x), Item::Event(y)) if x.same(y) => vec![],
        (Item::Event(x), Item::Event(y)) if x.kind() == y.kind() => {
            vec![format!("{}: {x} vs {y}", x.kind())]
        }
        _ => vec![format!("item: {a} vs {b}")],
    }
}

/// How far ahead the diff looks for an item to resynchronise on.
const WINDOW: usize = 16;

/// Compares the unsplit recording `a` with the split one `b` (both already
/// normalised); on a difference, a report naming each difference: the
/// indexes in both recordings, the field and both values, or an item only
/// one recording has (an event moved, a buffer lost) when the recordings
/// realign within a few items.
pub fn compare(case: &str, names: (&str, &str), a: &[Item], b: &[Item]) -> Result<(), String> {
    let (an, bn) = names;
    let same = |x: &Item, y: &Item| diff_items(x, y).is_empty();
    let mut diffs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if same(&a[i], &b[j]) {
            i += 1;
            j += 1;
            continue;
        }
        // An item only one side has: the other side's current item comes
        // a little later on this side.
        let extra_a = (1..=WINDOW).find(|&k| a.get(i + k).is_some_and(|x| same(x, &b[j])));
        let extra_b = (1..=WINDOW).find(|&k| b.get(j + k).is_some_and(|y| same(&a[i], y)));
        match (extra_a, extra_b) {
            (Some(k), kb) if kb.is_none_or(|kb| k <= kb) => {
                for (n, x) in a[i..i + k].iter().enumerate() {
                    diffs.push(format!(
                        "  {an}[{}] only in the {an} run ({bn} has it not here): {x}",
                        i + n
                    ));
                }
                i += k;
            }
            (_, Some(k)) => {
                for (n, y) in b[j..j + k].iter().enumerate() {
                    diffs.push(format!("  {bn}[{}] only in the {bn} run: {y}", j + n));
                }
                j += k;
            }
            _ => {
                for d in diff_items(&a[i], &b[j]) {
                    diffs.push(format!("  {an}[{i}] / {bn}[{j}] {d}"));
                }
                i += 1;
                j += 1;
            }
        }
    }
    let nb = |v: &[Item]| v.iter().filter(|i| matches!(i, Item::Buffer(_))).count();
    if i < a.len() || j < b.len() {
        let (side, at, rest) = if i < a.len() {
            (an, i, &a[i..])
        } else {
            (bn, j, &b[j..])
        };
        diffs.push(format!(
            "  {} more items only in the {side} run from {side}[{at}] ({an} {} items, {} buffers; {bn} {} items, {} buffers), first: {}",
            rest.len(),
            a.len(),
            nb(a),
            b.len(),
            nb(b),
            rest[0]
        ));
    }
    if diffs.is_empty() {
        return Ok(());
    }
    let n = diffs.len();
    diffs.truncate(10);
    Err(format!(
        "{case}: the {bn} run differs from the {an} run ({n} differences; {an} vs {bn}):\n{}{}",
        diffs.join("\n"),
        if n > 10 { "\n  ..." } else { "" }
    ))
}
