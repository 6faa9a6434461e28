//! Metas, events, caps and tags as strings, for the frame stream.
//!
//! The frame stream carries, in order with the frames, strings that the
//! shmring core does not interpret. This module turns what GStreamer 1.22
//! cannot serialise by itself into such strings and back, and is the one
//! parser of strings from the peer:
//!
//! * the metas of a buffer ([`metas_to_string`](metas::metas_to_string) / [`apply_metas`]):
//!   `GstVideoMeta`, `GstVideoCropMeta`, `GstReferenceTimestampMeta`,
//!   `GstAudioMeta` and `GstVideoTimeCodeMeta` ([`check_video_layout`]
//!   checks a plane layout carried another way);
//! * serialized downstream events the stream does not carry natively
//!   ([`downstream_event_to_string`] / [`downstream_event_from_string`]);
//! * upstream events going back from a consumer to the sink
//!   ([`upstream_event_to_string`] / [`upstream_event_from_string`]), and
//!   [`QosAggregate`], which decides which consumer's QoS goes upstream;
//! * caps and tag lists ([`caps_to_string`] / [`caps_from_string`], used by
//!   `peer::parse_caps`; [`tags_to_string`] / [`tags_from_string`], used by
//!   `clock::parse_peer_tags`), which GStreamer's parser would take with a
//!   `g_critical` on a hostile string.
//!
//! # Format
//!
//! A string is a list of GstStructure-like items, `;`-separated, in
//! GStreamer's caps syntax (`video-meta, width=(uint)66, offsets=(uint64)< 0,
//! 3456 >; crop-meta, ...`), with nested structures in brackets
//! (`structure=(structure)[name, field=(int)1]`). Values use types that
//! round-trip exactly: integers of each width, booleans, strings (always
//! quoted, `\"`, `\\` and `\ooo` escapes), fractions, bitmasks, buffers (hex),
//! dates, enums, flags and flag sets (`(GstNavigationModifierType)5`: a
//! registered GType name and its number), and doubles only where GStreamer
//! itself uses one (QoS proportion, navigation coordinates, instant rate,
//! custom structures), written in Rust's shortest exact form. Arrays `< >`
//! and lists `{ }` hold scalars of one type. The parser also reads what
//! GStreamer writes for these types (`(guint64)`, bare words, flag set
//! names) and infers untyped values as GStreamer does (`width=4`).
//!
//! # Trust
//!
//! The receiving side parses the peer's strings with its own parser (never
//! GStreamer's, which `g_critical`s on invalid names, also nested ones, and
//! on reversed ranges), within bounds ([`MAX_STRING`] bytes, [`MAX_DEPTH`]
//! nesting levels, [`MAX_ITEMS`] values per array or fields per structure,
//! [`MAX_TOC_ENTRIES`] TOC entries and [`MAX_TOC_DEPTH`] TOC levels), checks
//! every name, number and layout, and builds the GStreamer objects with their
//! typed constructors only after checking every precondition those
//! constructors assert. A layout that would make downstream code read
//! outside the buffer is refused. The sending side never produces a string
//! the receiving side would refuse (it leaves such a meta or event out).
//!
//! # Not carried
//!
//! * metas other than the five above (ROI, caption, overlay, parent buffer,
//!   custom metas, ...); of several `GstVideoMeta`s (multiview) only the one
//!   with the lowest id; the `GstVideoMeta` alignment (padding and stride
//!   alignment: informative, the offsets and strides are exact); video metas
//!   of tiled or paletted formats; audio metas of more than 64 channels;
//! * values that are not of the types above in custom structures, tags,
//!   caps or reference caps (samples, caps, date-times, ranges, nested
//!   arrays, floats, `GType`s, enums not registered in the receiving
//!   process): the event, meta or caps holding one is not carried, except
//!   tag lists, where only that tag value is dropped;
//! * out-of-band events (custom downstream OOB, custom both OOB), which are
//!   not serialized; `stream-collection` and `select-streams`; seek,
//!   latency, step and TOC-select upstream events;
//! * an event's seqnum and running-time offset.
//!
//! # Modules
//!
//! * `text`: the text form (values, items, the printer); `parser`: the
//!   peer's strings to the text form; `gvalue`: GValues and structures to
//!   and from the text form;
//! * `caps`, `tags`, `metas` (one module per meta), `toc`, `downstream`,
//!   `upstream`: each kind of string;
//! * `qos`: [`QosAggregate`].

mod caps;
mod downstream;
mod gvalue;
mod metas;
mod parser;
mod qos;
mod tags;
mod text;
mod toc;
mod upstream;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub(crate) use caps::{caps_from_string, caps_to_string};
pub(crate) use downstream::{downstream_event_from_string, downstream_event_to_string};
pub(crate) use metas::{apply_metas, check_video_layout, metas_to_string_without_video};
pub(crate) use qos::QosAggregate;
pub(crate) use tags::{tags_from_string, tags_to_string};
pub(crate) use upstream::{upstream_event_from_string, upstream_event_to_string};

/// Longest string accepted from the peer (bytes).
pub(crate) const MAX_STRING: usize = 64 * 1024;
/// Deepest nesting of structures inside a string.
pub(crate) const MAX_DEPTH: usize = 8;
/// Most items of one list, values of one array or list, or fields of one
/// structure.
pub(crate) const MAX_ITEMS: usize = 1024;
/// Most entries of a TOC (all levels together).
pub(crate) const MAX_TOC_ENTRIES: usize = MAX_ITEMS;
/// Deepest TOC (an entry inside an entry inside ... : levels).
pub(crate) const MAX_TOC_DEPTH: usize = 64;
/// Most reference timestamp metas on one buffer.
pub(crate) const MAX_REFERENCE_METAS: usize = 16;
/// Longest protection event payload (bytes).
pub(crate) const MAX_PROTECTION_DATA: usize = 16 * 1024;

/// Why a string from the peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SerdeError {
    /// The string is longer than [`MAX_STRING`].
    #[error("string of {0} bytes exceeds the {MAX_STRING}-byte limit")]
    TooLong(usize),
    /// The string does not follow the syntax.
    #[error("syntax error at byte {at}: {what}")]
    Syntax {
        /// Byte offset of the error.
        at: usize,
        /// What was expected or found.
        what: String,
    },
    /// The string parses but says something invalid or unsafe.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> SerdeError {
    SerdeError::Invalid(msg.into())
}
