//! Metas, events, caps and tags as strings, for the frame stream.
//!
//! The frame stream carries, in order with the frames, strings that the
//! shmring core does not interpret. This module turns what GStreamer 1.22
//! cannot serialise by itself into such strings and back, and is the one
//! parser of strings from the peer:
//!
//! * the metas of a buffer ([`metas_to_string`] / [`apply_metas`]):
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

// The elements start using this module in the lead's integration.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

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

// ---------------------------------------------------------------------------
// The text form: a small AST, its printer and its parser.
// ---------------------------------------------------------------------------

/// One value of the text form.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Int(i32),
    UInt(u32),
    Int64(i64),
    UInt64(u64),
    Bool(bool),
    /// NaN and infinities included (written `NaN`, `inf`, `-inf`): a
    /// navigation touch event's pressure is NaN when unknown. Where a
    /// constructor or downstream code needs a finite value, it is checked.
    Double(f64),
    Str(String),
    /// Denominator non-zero, neither part `i32::MIN`.
    Fraction(i32, i32),
    Bitmask(u64),
    Struct(Box<Item>),
    /// A registered enum GType's name and a value it defines.
    Enum(String, i32),
    /// A registered flags GType's name and bits it defines.
    Flags(String, u32),
    /// A buffer's bytes (written in hex, as GStreamer writes `codec_data`).
    Buffer(Vec<u8>),
    /// A valid date: year, month (1-12), day.
    Date(u16, u8, u8),
    /// A registered `GstFlagSet` subtype's name, its flags and mask.
    FlagSet(String, u32, u32),
    Array(Vec<Val>),
    List(Vec<Val>),
}

impl Val {
    fn type_name(&self) -> &str {
        match self {
            Val::Int(_) => "int",
            Val::UInt(_) => "uint",
            Val::Int64(_) => "int64",
            Val::UInt64(_) => "uint64",
            Val::Bool(_) => "boolean",
            Val::Double(_) => "double",
            Val::Str(_) => "string",
            Val::Fraction(..) => "fraction",
            Val::Bitmask(_) => "bitmask",
            Val::Struct(_) => "structure",
            Val::Enum(t, _) | Val::Flags(t, _) | Val::FlagSet(t, ..) => t,
            Val::Buffer(_) => "buffer",
            Val::Date(..) => "date",
            Val::Array(v) | Val::List(v) => v.first().map_or("int", Val::type_name),
        }
    }
}

/// A named structure of the text form.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    name: String,
    /// Caps features written after the name (`video/x-raw(memory:X)`):
    /// only caps have them.
    features: Option<Vec<String>>,
    fields: Vec<(String, Val)>,
}

/// A getter of a field of one value type: the value, or an error naming
/// the structure, the field and the type wanted.
macro_rules! typed_getter {
    ($name:ident, $ty:ty, $variant:ident, $want:literal) => {
        fn $name(&self, field: &str) -> Result<$ty, SerdeError> {
            match self.req(field)? {
                Val::$variant(v) => Ok(*v),
                _ => Err(self.wrong(field, $want)),
            }
        }
    };
}

impl Item {
    fn new(name: &str) -> Self {
        Item {
            name: name.to_owned(),
            features: None,
            fields: Vec::new(),
        }
    }

    fn with(mut self, name: &str, v: Val) -> Self {
        self.fields.push((name.to_owned(), v));
        self
    }

    fn get(&self, name: &str) -> Option<&Val> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Refuses fields outside `allowed` and duplicated fields.
    fn check_fields(&self, allowed: &[&str]) -> Result<(), SerdeError> {
        for (i, (n, _)) in self.fields.iter().enumerate() {
            if !allowed.contains(&n.as_str()) {
                return Err(invalid(format!("{}: unknown field {n:?}", self.name)));
            }
            if self.fields[..i].iter().any(|(m, _)| m == n) {
                return Err(invalid(format!("{}: field {n:?} given twice", self.name)));
            }
        }
        Ok(())
    }

    fn req(&self, name: &str) -> Result<&Val, SerdeError> {
        self.get(name)
            .ok_or_else(|| invalid(format!("{}: missing field {name:?}", self.name)))
    }

    fn wrong(&self, name: &str, want: &str) -> SerdeError {
        invalid(format!("{}: field {name:?} is not {want}", self.name))
    }

    typed_getter!(u32, u32, UInt, "a uint");
    typed_getter!(i32, i32, Int, "an int");
    typed_getter!(u64, u64, UInt64, "a uint64");
    typed_getter!(i64, i64, Int64, "an int64");
    typed_getter!(bool, bool, Bool, "a boolean");
    typed_getter!(f64, f64, Double, "a double");

    fn str(&self, name: &str) -> Result<&str, SerdeError> {
        match self.req(name)? {
            Val::Str(v) => Ok(v),
            _ => Err(self.wrong(name, "a string")),
        }
    }

    fn item(&self, name: &str) -> Result<&Item, SerdeError> {
        match self.req(name)? {
            Val::Struct(v) => Ok(v),
            _ => Err(self.wrong(name, "a structure")),
        }
    }

    /// An array (or an absent field: empty).
    fn array(&self, name: &str) -> Result<&[Val], SerdeError> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Val::Array(v)) => Ok(v),
            Some(_) => Err(self.wrong(name, "an array")),
        }
    }
}

fn print_items(items: &[Item]) -> String {
    let mut out = String::new();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        print_item(&mut out, it);
    }
    out
}

fn print_item(out: &mut String, it: &Item) {
    out.push_str(&it.name);
    if let Some(f) = &it.features {
        let _ = write!(out, "({})", f.join(", "));
    }
    for (n, v) in &it.fields {
        let _ = write!(out, ", {n}=({})", v.type_name());
        print_val(out, v);
    }
}

fn print_val(out: &mut String, v: &Val) {
    match v {
        Val::Int(x) => {
            let _ = write!(out, "{x}");
        }
        Val::UInt(x) => {
            let _ = write!(out, "{x}");
        }
        Val::Int64(x) => {
            let _ = write!(out, "{x}");
        }
        Val::UInt64(x) => {
            let _ = write!(out, "{x}");
        }
        Val::Bool(x) => out.push_str(if *x { "true" } else { "false" }),
        Val::Double(x) => {
            let _ = write!(out, "{x:?}");
        }
        Val::Str(s) => print_escaped(out, s),
        Val::Fraction(n, d) => {
            let _ = write!(out, "{n}/{d}");
        }
        Val::Bitmask(x) => {
            let _ = write!(out, "0x{x:016x}");
        }
        Val::Struct(it) => {
            out.push('[');
            print_item(out, it);
            out.push(']');
        }
        Val::Enum(_, x) => {
            let _ = write!(out, "{x}");
        }
        Val::Buffer(b) => out.push_str(&hex(b)),
        Val::Date(y, m, d) => {
            let _ = write!(out, "{y:04}-{m:02}-{d:02}");
        }
        Val::FlagSet(_, f, m) => {
            let _ = write!(out, "{f:x}:{m:x}");
        }
        Val::Flags(_, x) => {
            let _ = write!(out, "{x}");
        }
        Val::Array(vs) | Val::List(vs) => {
            let (open, close) = if matches!(v, Val::Array(_)) {
                ('<', '>')
            } else {
                ('{', '}')
            };
            out.push(open);
            for (i, e) in vs.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { ", " });
                print_val(out, e);
            }
            out.push(' ');
            out.push(close);
        }
    }
}

/// Writes `"s"` with `"` and `\` escaped and control bytes as `\ooo`.
fn print_escaped(out: &mut String, s: &str) {
    // Plain words go bare, as GStreamer prints them (`format=(string)I420`):
    // programs that read caps strings with a simple parser expect that.
    if !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-+/:.".contains(&c))
    {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// A name as GStreamer's `gst_structure_validate_name` accepts it: a letter,
/// then letters, digits and `/-_.:+`. Also used for field names.
fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || b"/-_.:+".contains(&c))
        && s.len() <= 256
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Fields of types this parser does not build are skipped instead of
    /// refused (tag lists: a tag value that is not carried is dropped).
    lenient: bool,
}

/// The canonical name of a type as written in the text form, GStreamer's
/// abbreviations and GType names included (`gint64`, `guint64`, `i`, ...).
fn canonical_type(ty: &str) -> &str {
    match ty {
        "i" | "gint" => "int",
        "u" | "guint" => "uint",
        "gint64" => "int64",
        "guint64" => "uint64",
        "b" | "bool" | "gboolean" => "boolean",
        "d" | "gdouble" => "double",
        "s" | "str" | "gchararray" => "string",
        "GstFraction" => "fraction",
        "GstBitmask" => "bitmask",
        "GstStructure" => "structure",
        "GstBuffer" => "buffer",
        "GDate" => "date",
        other => other,
    }
}

/// Whether the parser builds values of type `ty` (canonical).
fn known_type(ty: &str) -> bool {
    matches!(
        ty,
        "int"
            | "uint"
            | "int64"
            | "uint64"
            | "boolean"
            | "double"
            | "string"
            | "fraction"
            | "bitmask"
            | "structure"
            | "buffer"
            | "date"
    ) || glib::Type::from_name(ty)
        .is_some_and(|t| t.is_a(glib::Type::ENUM) || t.is_a(glib::Type::FLAGS) || is_flagset(t))
}

/// Registers the GTypes peer strings name that GStreamer registers lazily
/// (a type is looked up by name, so it must exist before the first string).
fn register_types() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = gst_video::NavigationModifierType::static_type();
        let _ = gst_video::VideoMultiviewFlags::static_type();
        // SAFETY: a GType getter without preconditions (GStreamer is
        // initialised: strings are parsed only by its elements and tests).
        let _ = unsafe { gst_video::ffi::gst_video_multiview_flagset_get_type() };
    });
}

fn is_flagset(t: glib::Type) -> bool {
    glib::Type::from_name("GstFlagSet").is_some_and(|f| t != f && t.is_a(f))
}

impl<'a> Parser<'a> {
    fn err(&self, what: impl Into<String>) -> SerdeError {
        SerdeError::Syntax {
            at: self.pos,
            what: what.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Takes byte `c`, or fails naming what was expected.
    fn consume(&mut self, c: u8) -> Result<(), SerdeError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(format!("expected '{}'", char::from(c))))
        }
    }

    /// A run of bytes in `ok`, at most `max` long, as a `&str`.
    fn token(&mut self, ok: impl Fn(u8) -> bool, max: usize) -> Result<&'a str, SerdeError> {
        let start = self.pos;
        while self.peek().is_some_and(&ok) {
            self.pos += 1;
            if self.pos - start > max {
                return Err(self.err("token too long"));
            }
        }
        if self.pos == start {
            return Err(self.err("expected a token"));
        }
        // Only ASCII bytes pass the predicates used here.
        std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("not ASCII"))
    }

    fn name(&mut self) -> Result<String, SerdeError> {
        let start = self.pos;
        let t = self.token(|c| c.is_ascii_alphanumeric() || b"/-_.:+".contains(&c), 256)?;
        if !valid_name(t) {
            self.pos = start;
            return Err(self.err(format!("invalid name {t:?}")));
        }
        Ok(t.to_owned())
    }

    /// `item (; item)* ;?` up to the end.
    fn items(&mut self) -> Result<Vec<Item>, SerdeError> {
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek().is_none() {
                break;
            }
            if items.len() >= MAX_ITEMS {
                return Err(self.err("too many items"));
            }
            items.push(self.item(0)?);
            self.ws();
            if self.peek().is_none() {
                break;
            }
            self.consume(b';')?;
        }
        Ok(items)
    }

    /// `name (, field=(type)value)*`, stopping before `;`, `]` or the end.
    fn item(&mut self, depth: usize) -> Result<Item, SerdeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("structures nested too deep"));
        }
        let name = self.name()?;
        let features = if self.peek() == Some(b'(') {
            Some(self.features()?)
        } else {
            None
        };
        let mut fields: Vec<(String, Val)> = Vec::new();
        loop {
            self.ws();
            if !self.eat(b',') {
                break;
            }
            if fields.len() >= MAX_ITEMS {
                return Err(self.err("too many fields"));
            }
            self.ws();
            let at = self.pos;
            let fname = self.name()?;
            if fields.iter().any(|(n, _)| *n == fname) {
                self.pos = at;
                return Err(self.err(format!("field {fname:?} given twice")));
            }
            self.ws();
            self.consume(b'=')?;
            self.ws();
            if !self.eat(b'(') {
                // No type: inferred as GStreamer does (hand-written caps).
                let v = match self.peek() {
                    Some(b'<') => Val::Array(self.untyped_values(b'>')?),
                    Some(b'{') => Val::List(self.untyped_values(b'}')?),
                    _ => self.untyped_scalar()?,
                };
                fields.push((fname, v));
                continue;
            }
            let ty = canonical_type(self.token(|c| c.is_ascii_alphanumeric() || c == b'_', 128)?);
            self.consume(b')')?;
            self.ws();
            if self.lenient && !known_type(ty) {
                self.skip_value()?;
                continue;
            }
            let v = match self.peek() {
                Some(b'<') => Val::Array(self.values(ty, b'>', depth)?),
                Some(b'{') => Val::List(self.values(ty, b'}', depth)?),
                _ => self.scalar(ty, depth)?,
            };
            fields.push((fname, v));
        }
        Ok(Item {
            name,
            features,
            fields,
        })
    }

    /// `(feature, feature)` after a caps structure's name: each
    /// `namespace:Name` as `gst_caps_feature_name_is_valid` wants it, or
    /// `ANY`.
    fn features(&mut self) -> Result<Vec<String>, SerdeError> {
        self.consume(b'(')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            let at = self.pos;
            let f = self.token(|c| c.is_ascii_alphanumeric() || c == b':', 256)?;
            let ok = f == "ANY"
                || f.split_once(':').is_some_and(|(ns, n)| {
                    !ns.is_empty()
                        && ns.bytes().all(|c| c.is_ascii_alphabetic())
                        && n.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
                        && n.bytes().all(|c| c.is_ascii_alphanumeric())
                });
            if !ok || out.len() >= 64 {
                self.pos = at;
                return Err(self.err(format!("invalid caps feature {f:?}")));
            }
            out.push(f.to_owned());
            self.ws();
            if self.eat(b')') {
                return Ok(out);
            }
            self.consume(b',')?;
        }
    }

    /// Skips a value of a type this parser does not build: up to the next
    /// `,` or `;` (or the end of the enclosing bracket) outside quotes and
    /// brackets.
    fn skip_value(&mut self) -> Result<(), SerdeError> {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None if depth == 0 => return Ok(()),
                None => return Err(self.err("unterminated value")),
                Some(b'"') => {
                    self.string()?;
                    continue;
                }
                Some(b'<' | b'{' | b'[' | b'(') => depth += 1,
                Some(b'>' | b'}' | b']' | b')') => {
                    if depth == 0 {
                        return Ok(());
                    }
                    depth -= 1;
                }
                Some(b',' | b';') if depth == 0 => return Ok(()),
                _ => {}
            }
            self.pos += 1;
        }
    }

    fn values(&mut self, ty: &str, close: u8, depth: usize) -> Result<Vec<Val>, SerdeError> {
        self.pos += 1;
        let mut vs = Vec::new();
        self.ws();
        if self.eat(close) {
            return Ok(vs);
        }
        loop {
            if vs.len() >= MAX_ITEMS {
                return Err(self.err("too many values"));
            }
            self.ws();
            vs.push(self.scalar(ty, depth)?);
            self.ws();
            if self.eat(close) {
                return Ok(vs);
            }
            self.consume(b',')?;
        }
    }

    /// A value without a type, inferred in GStreamer's order: int, double,
    /// fraction, boolean, string.
    fn untyped_scalar(&mut self) -> Result<Val, SerdeError> {
        if self.peek() == Some(b'"') {
            return Ok(Val::Str(self.string()?));
        }
        let t = self.token(
            |c| c.is_ascii_alphanumeric() || b"_-+/:.".contains(&c),
            MAX_STRING,
        )?;
        let hex = t
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .map(|v| v as i32);
        if let Some(v) = t.parse::<i32>().ok().or(hex) {
            return Ok(Val::Int(v));
        }
        if t.bytes().any(|c| c.is_ascii_digit()) {
            if let Ok(v) = t.parse::<f64>() {
                return Ok(Val::Double(v));
            }
            if let Some((n, d)) = t.split_once('/') {
                if let (Ok(n), Ok(d)) = (n.parse::<i32>(), d.parse::<i32>()) {
                    if d != 0 && n != i32::MIN && d != i32::MIN {
                        return Ok(Val::Fraction(n, d));
                    }
                }
            }
        }
        Ok(match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "t" => Val::Bool(true),
            "false" | "no" | "f" => Val::Bool(false),
            _ => Val::Str(t.to_owned()),
        })
    }

    /// An array or list without a type: its values inferred one by one, and
    /// of one type (GStreamer asserts that).
    fn untyped_values(&mut self, close: u8) -> Result<Vec<Val>, SerdeError> {
        self.pos += 1;
        let mut vs: Vec<Val> = Vec::new();
        self.ws();
        if self.eat(close) {
            return Ok(vs);
        }
        loop {
            if vs.len() >= MAX_ITEMS {
                return Err(self.err("too many values"));
            }
            self.ws();
            let v = self.untyped_scalar()?;
            if vs.first().is_some_and(|f| f.type_name() != v.type_name()) {
                return Err(self.err("values of different types in one array or list"));
            }
            vs.push(v);
            self.ws();
            if self.eat(close) {
                return Ok(vs);
            }
            self.consume(b',')?;
        }
    }

    fn number<T: std::str::FromStr>(&mut self, signed: bool) -> Result<T, SerdeError> {
        let start = self.pos;
        let t = self.token(|c| c.is_ascii_digit() || (signed && c == b'-'), 24)?;
        t.parse::<T>().map_err(|_| {
            self.pos = start;
            self.err(format!("invalid number {t:?}"))
        })
    }

    fn scalar(&mut self, ty: &str, depth: usize) -> Result<Val, SerdeError> {
        let start = self.pos;
        Ok(match canonical_type(ty) {
            "int" => Val::Int(self.number(true)?),
            "uint" => Val::UInt(self.number(false)?),
            "int64" => Val::Int64(self.number(true)?),
            "uint64" => Val::UInt64(self.number(false)?),
            "boolean" => match self.token(|c| c.is_ascii_alphabetic(), 8)? {
                "true" => Val::Bool(true),
                "false" => Val::Bool(false),
                t => {
                    self.pos = start;
                    return Err(self.err(format!("invalid boolean {t:?}")));
                }
            },
            "double" => {
                let t = self.token(|c| c.is_ascii_alphanumeric() || b".+-".contains(&c), 64)?;
                match t.parse::<f64>() {
                    Ok(x) => Val::Double(x),
                    _ => {
                        self.pos = start;
                        return Err(self.err(format!("invalid double {t:?}")));
                    }
                }
            }
            "string" => Val::Str(self.string()?),
            "fraction" => {
                let n: i32 = self.number(true)?;
                self.consume(b'/')?;
                let d: i32 = self.number(true)?;
                if d == 0 || n == i32::MIN || d == i32::MIN {
                    self.pos = start;
                    return Err(self.err("invalid fraction"));
                }
                Val::Fraction(n, d)
            }
            "bitmask" => {
                if !(self.eat(b'0') && self.eat(b'x')) {
                    return Err(self.err("expected 0x"));
                }
                let t = self.token(|c| c.is_ascii_hexdigit(), 16)?;
                Val::Bitmask(u64::from_str_radix(t, 16).map_err(|_| self.err("invalid bitmask"))?)
            }
            "buffer" => {
                let begin = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    self.pos += 1;
                }
                let t = std::str::from_utf8(&self.s[begin..self.pos]).unwrap_or("");
                Val::Buffer(unhex(t).ok_or_else(|| self.err("odd number of hex digits"))?)
            }
            "date" => {
                let y: u16 = self.number(false)?;
                self.consume(b'-')?;
                let m: u8 = self.number(false)?;
                self.consume(b'-')?;
                let d: u8 = self.number(false)?;
                if date_of(y, m, d).is_none() {
                    self.pos = start;
                    return Err(self.err(format!("invalid date {y}-{m}-{d}")));
                }
                Val::Date(y, m, d)
            }
            "structure" => {
                self.consume(b'[')?;
                self.ws();
                let it = self.item(depth + 1)?;
                self.ws();
                self.consume(b']')?;
                Val::Struct(Box::new(it))
            }
            other => {
                let t = glib::Type::from_name(other)
                    .ok_or_else(|| self.err(format!("unknown type {other:?}")))?;
                if t.is_a(glib::Type::ENUM) {
                    let v: i32 = self.number(true)?;
                    let ok = glib::EnumClass::with_type(t).is_some_and(|c| c.value(v).is_some());
                    if !ok {
                        self.pos = start;
                        return Err(self.err(format!("{v} is not a value of {other}")));
                    }
                    Val::Enum(other.to_owned(), v)
                } else if is_flagset(t) {
                    let f = self.token(|c| c.is_ascii_hexdigit(), 8)?;
                    self.consume(b':')?;
                    let m = self.token(|c| c.is_ascii_hexdigit(), 8)?;
                    let (f, m) = match (u32::from_str_radix(f, 16), u32::from_str_radix(m, 16)) {
                        (Ok(f), Ok(m)) => (f, m),
                        _ => return Err(self.err("invalid flag set")),
                    };
                    // GStreamer appends the flags' names: informative.
                    if self.eat(b':') {
                        let _ =
                            self.token(|c| c.is_ascii_alphanumeric() || b"/-_+".contains(&c), 4096);
                    }
                    Val::FlagSet(other.to_owned(), f, m)
                } else if t.is_a(glib::Type::FLAGS) {
                    let v: u32 = self.number(false)?;
                    if flags_value(t, v).is_none() {
                        self.pos = start;
                        return Err(self.err(format!("{v} is not a set of {other} flags")));
                    }
                    Val::Flags(other.to_owned(), v)
                } else {
                    return Err(self.err(format!("unsupported type {other:?}")));
                }
            }
        })
    }

    /// A quoted string (escapes `\c` and `\ooo`), or a bare word.
    fn string(&mut self) -> Result<String, SerdeError> {
        if !self.eat(b'"') {
            let t = self.token(
                |c| c.is_ascii_alphanumeric() || b"_-+/:.".contains(&c),
                MAX_STRING,
            )?;
            return Ok(t.to_owned());
        }
        let mut bytes = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated escape"));
                    };
                    if e.is_ascii_digit() {
                        let d = self.s.get(self.pos..self.pos + 3).unwrap_or(&[]);
                        if d.len() != 3 || !d.iter().all(|b| (b'0'..=b'7').contains(b)) {
                            return Err(self.err("invalid octal escape"));
                        }
                        let v = u32::from(d[0] - b'0') * 64
                            + u32::from(d[1] - b'0') * 8
                            + u32::from(d[2] - b'0');
                        let v = u8::try_from(v).map_err(|_| self.err("octal escape over 255"))?;
                        bytes.push(v);
                        self.pos += 3;
                    } else {
                        bytes.push(e);
                        self.pos += 1;
                    }
                }
                _ => bytes.push(c),
            }
        }
        if bytes.contains(&0) {
            return Err(self.err("NUL byte in a string"));
        }
        String::from_utf8(bytes).map_err(|_| self.err("string is not UTF-8"))
    }
}

/// Parses a peer's string into items, within the limits.
fn parse_items(s: &str) -> Result<Vec<Item>, SerdeError> {
    if s.len() > MAX_STRING {
        return Err(SerdeError::TooLong(s.len()));
    }
    register_types();
    Parser {
        s: s.as_bytes(),
        pos: 0,
        lenient: false,
    }
    .items()
}

/// A valid date.
fn date_of(y: u16, m: u8, d: u8) -> Option<glib::Date> {
    use glib::DateMonth::*;
    let month = [
        January, February, March, April, May, June, July, August, September, October, November,
        December,
    ]
    .get(usize::from(m).checked_sub(1)?)
    .copied()?;
    glib::Date::from_dmy(d, month, y).ok()
}

/// Parses a string that must hold exactly one item.
fn parse_one(s: &str) -> Result<Item, SerdeError> {
    let mut items = parse_items(s)?;
    if items.len() != 1 {
        return Err(invalid(format!("expected one item, found {}", items.len())));
    }
    items.pop().ok_or_else(|| invalid("no item"))
}

/// A value of the flags type `t` holding exactly the bits `v`, if `t`
/// defines them all.
fn flags_value(t: glib::Type, v: u32) -> Option<glib::Value> {
    let class = glib::FlagsClass::with_type(t)?;
    let mut value = glib::Value::from_type(t);
    let mut covered = 0u32;
    for fv in class.values() {
        let bits = fv.value();
        if bits != 0 && v & bits == bits {
            value = class.set(value, bits).ok()?;
            covered |= bits;
        }
    }
    (covered == v).then_some(value)
}

// ---------------------------------------------------------------------------
// GValues and structures <-> the text form.
// ---------------------------------------------------------------------------

/// A scalar GValue in the text form (`None`: a type that is not carried).
fn scalar_from_gvalue(v: &glib::Value, depth: usize) -> Option<Val> {
    let t = v.type_();
    Some(if t == glib::Type::I32 {
        Val::Int(v.get().ok()?)
    } else if t == glib::Type::U32 {
        Val::UInt(v.get().ok()?)
    } else if t == glib::Type::I64 {
        Val::Int64(v.get().ok()?)
    } else if t == glib::Type::U64 {
        Val::UInt64(v.get().ok()?)
    } else if t == glib::Type::BOOL {
        Val::Bool(v.get().ok()?)
    } else if t == glib::Type::F64 {
        Val::Double(v.get().ok()?)
    } else if t == glib::Type::STRING {
        let s: Option<String> = v.get().ok()?;
        let s = s?;
        if s.contains('\0') {
            return None;
        }
        Val::Str(s)
    } else if t == gst::Fraction::static_type() {
        let f: gst::Fraction = v.get().ok()?;
        Val::Fraction(f.numer(), f.denom())
    } else if t == gst::Bitmask::static_type() {
        let b: gst::Bitmask = v.get().ok()?;
        Val::Bitmask(*b)
    } else if t == gst::Buffer::static_type() {
        let b: gst::Buffer = v.get().ok()?;
        if b.size() > MAX_STRING / 2 {
            return None;
        }
        let map = b.map_readable().ok()?;
        Val::Buffer(map.to_vec())
    } else if t == glib::Date::static_type() {
        let d: glib::Date = v.get().ok()?;
        if !d.valid() {
            return None;
        }
        let m = u8::try_from(d.month().into_glib()).ok()?;
        Val::Date(d.year(), m, d.day())
    } else if is_flagset(t) {
        // SAFETY: `v` holds a value of a GstFlagSet subtype (checked above).
        let (f, m) = unsafe {
            let p = glib::translate::ToGlibPtr::to_glib_none(v).0;
            (
                gst::ffi::gst_value_get_flagset_flags(p),
                gst::ffi::gst_value_get_flagset_mask(p),
            )
        };
        Val::FlagSet(t.name().to_owned(), f, m)
    } else if t == gst::Structure::static_type() {
        let s: gst::Structure = v.get().ok()?;
        Val::Struct(Box::new(item_from_structure(&s, depth + 1)?))
    } else if t.is_a(glib::Type::ENUM) {
        let (_, ev) = glib::EnumValue::from_value(v)?;
        Val::Enum(t.name().to_owned(), ev.value())
    } else if t.is_a(glib::Type::FLAGS) {
        // SAFETY: `v` holds a value of a flags type (checked above).
        let bits = unsafe {
            glib::gobject_ffi::g_value_get_flags(glib::translate::ToGlibPtr::to_glib_none(v).0)
        };
        Val::Flags(t.name().to_owned(), bits)
    } else {
        return None;
    })
}

/// A GValue (scalar, or array / list of scalars of one type) in the text form.
fn val_from_gvalue(v: &glib::Value, depth: usize) -> Option<Val> {
    let t = v.type_();
    let elems = if t == gst::Array::static_type() {
        let a: gst::Array = v.get().ok()?;
        Some((true, a.iter().map(|e| e.to_value()).collect::<Vec<_>>()))
    } else if t == gst::List::static_type() {
        let l: gst::List = v.get().ok()?;
        Some((false, l.iter().map(|e| e.to_value()).collect::<Vec<_>>()))
    } else {
        None
    };
    let Some((is_array, elems)) = elems else {
        return scalar_from_gvalue(v, depth);
    };
    if elems.len() > MAX_ITEMS {
        return None;
    }
    let vals = elems
        .iter()
        .map(|e| scalar_from_gvalue(e, depth))
        .collect::<Option<Vec<_>>>()?;
    if let Some(first) = vals.first() {
        if vals.iter().any(|x| x.type_name() != first.type_name()) {
            return None;
        }
    }
    Some(if is_array {
        Val::Array(vals)
    } else {
        Val::List(vals)
    })
}

/// A structure in the text form, if every field is of a carried type.
fn item_from_structure(s: &gst::StructureRef, depth: usize) -> Option<Item> {
    if depth > MAX_DEPTH || !valid_name(s.name()) || s.n_fields() > MAX_ITEMS {
        return None;
    }
    let mut it = Item::new(s.name());
    for (name, v) in s.iter() {
        if !valid_name(name) {
            return None;
        }
        it.fields
            .push((name.to_string(), val_from_gvalue(v, depth)?));
    }
    Some(it)
}

/// A scalar of the text form as a GValue (the parser checked every value).
fn scalar_to_gvalue(v: &Val, depth: usize) -> Result<glib::SendValue, SerdeError> {
    Ok(match v {
        Val::Int(x) => x.to_send_value(),
        Val::UInt(x) => x.to_send_value(),
        Val::Int64(x) => x.to_send_value(),
        Val::UInt64(x) => x.to_send_value(),
        Val::Bool(x) => x.to_send_value(),
        Val::Double(x) => x.to_send_value(),
        Val::Str(x) => x.to_send_value(),
        Val::Fraction(n, d) => {
            if *d == 0 || *n == i32::MIN || *d == i32::MIN {
                return Err(invalid("invalid fraction"));
            }
            gst::Fraction::new_raw(*n, *d).to_send_value()
        }
        Val::Bitmask(x) => gst::Bitmask::new(*x).to_send_value(),
        Val::Struct(it) => item_to_structure(it, depth + 1)?.to_send_value(),
        Val::Enum(t, x) => {
            let value = glib::Type::from_name(t)
                .filter(|t| t.is_a(glib::Type::ENUM))
                .and_then(glib::EnumClass::with_type)
                .and_then(|c| c.to_value(*x))
                .ok_or_else(|| invalid(format!("{x} is not a value of {t}")))?;
            // SAFETY: an enum GValue holds a plain integer, which any thread
            // may use.
            unsafe {
                <glib::SendValue as glib::translate::UnsafeFrom<_>>::unsafe_from(value.into_raw())
            }
        }
        Val::Flags(t, x) => {
            let value = glib::Type::from_name(t)
                .filter(|t| t.is_a(glib::Type::FLAGS))
                .and_then(|t| flags_value(t, *x))
                .ok_or_else(|| invalid(format!("{x} is not a set of {t} flags")))?;
            // SAFETY: a flags GValue holds a plain integer, which any thread
            // may use.
            unsafe {
                <glib::SendValue as glib::translate::UnsafeFrom<_>>::unsafe_from(value.into_raw())
            }
        }
        Val::Buffer(b) => gst::Buffer::from_mut_slice(b.clone()).to_send_value(),
        Val::Date(y, m, d) => date_of(*y, *m, *d)
            .ok_or_else(|| invalid(format!("invalid date {y}-{m}-{d}")))?
            .to_send_value(),
        Val::FlagSet(t, f, m) => {
            let ty = glib::Type::from_name(t)
                .filter(|t| is_flagset(*t))
                .ok_or_else(|| invalid(format!("{t} is not a flag set type")))?;
            let mut value = glib::Value::from_type(ty);
            // SAFETY: `value` was initialised to a GstFlagSet subtype, the
            // function's only precondition.
            unsafe {
                gst::ffi::gst_value_set_flagset(
                    glib::translate::ToGlibPtrMut::to_glib_none_mut(&mut value).0,
                    *f,
                    *m,
                )
            };
            // SAFETY: a flag set value holds two plain integers.
            unsafe {
                <glib::SendValue as glib::translate::UnsafeFrom<_>>::unsafe_from(value.into_raw())
            }
        }
        Val::Array(_) | Val::List(_) => return Err(invalid("nested arrays are not supported")),
    })
}

fn val_to_gvalue(v: &Val, depth: usize) -> Result<glib::SendValue, SerdeError> {
    match v {
        Val::Array(vs) => Ok(gst::Array::from_values(
            vs.iter()
                .map(|e| scalar_to_gvalue(e, depth))
                .collect::<Result<Vec<_>, _>>()?,
        )
        .to_send_value()),
        Val::List(vs) => Ok(gst::List::from_values(
            vs.iter()
                .map(|e| scalar_to_gvalue(e, depth))
                .collect::<Result<Vec<_>, _>>()?,
        )
        .to_send_value()),
        _ => scalar_to_gvalue(v, depth),
    }
}

/// Builds a structure from the text form (names were validated by the parser
/// and are checked again, so no GStreamer assertion can fire).
fn item_to_structure(it: &Item, depth: usize) -> Result<gst::Structure, SerdeError> {
    if depth > MAX_DEPTH {
        return Err(invalid("structures nested too deep"));
    }
    if !valid_name(&it.name) {
        return Err(invalid(format!("invalid structure name {:?}", it.name)));
    }
    if it.features.is_some() {
        return Err(invalid(format!("{}: caps features outside caps", it.name)));
    }
    let mut s = gst::Structure::new_empty(it.name.as_str());
    for (n, v) in &it.fields {
        if !valid_name(n) {
            return Err(invalid(format!("invalid field name {n:?}")));
        }
        s.set_value(n.as_str(), val_to_gvalue(v, depth)?);
    }
    Ok(s)
}

/// A tag list in the text form: one field per tag, a list when it has
/// several values; values of types that are not carried are left out.
fn item_from_tags(tags: &gst::TagListRef) -> Item {
    let mut it = Item::new("taglist");
    for (name, values) in tags.iter_generic() {
        if !valid_name(name) {
            continue;
        }
        let vals: Vec<Val> = values
            .filter_map(|v| scalar_from_gvalue(v, MAX_DEPTH))
            .take(MAX_ITEMS)
            .collect();
        match vals.len() {
            0 => {}
            1 => it.fields.push((
                name.to_string(),
                vals.into_iter().next().unwrap_or(Val::Int(0)),
            )),
            _ if vals.iter().all(|x| x.type_name() == vals[0].type_name()) => {
                it.fields.push((name.to_string(), Val::List(vals)))
            }
            _ => {}
        }
    }
    it
}

/// A tag list from the text form, keeping (like `clock::parse_peer_tags`)
/// only values of registered tags whose type matches the registration.
fn item_to_tags(it: &Item, scope: gst::TagScope) -> Result<gst::TagList, SerdeError> {
    if it.name != "taglist" {
        return Err(invalid(format!("tags: unexpected name {:?}", it.name)));
    }
    let mut tags = gst::TagList::new();
    {
        let t = tags.make_mut();
        t.set_scope(scope);
        for (name, v) in &it.fields {
            if !gst::tags::tag_exists(name) {
                continue;
            }
            let vals = match v {
                Val::List(vs) => vs.as_slice(),
                Val::Array(_) => return Err(invalid("tags: arrays are not tag values")),
                one => std::slice::from_ref(one),
            };
            for x in vals {
                let gv = scalar_to_gvalue(x, MAX_DEPTH)?;
                // Refuses (without an assertion) a type that is not the tag's.
                let _ = t.add_value(name.as_str(), &gv, gst::TagMergeMode::Append);
            }
        }
    }
    Ok(tags)
}

/// A tag list as a string [`tags_from_string`] reads (values of types that
/// are not carried, such as images, left out); `None` if over
/// [`MAX_STRING`].
pub(crate) fn tags_to_string(tags: &gst::TagListRef) -> Option<String> {
    bounded(print_items(&[item_from_tags(tags)]))
}

/// A tag list from the peer (`taglist, tag=(type)value, ...`, as
/// [`tags_to_string`] or GStreamer writes it), parsed without GStreamer's
/// parser: values of types this module does not build (date-times, samples,
/// ...) are skipped, and only values of registered tags whose type matches
/// the registration are kept.
pub(crate) fn tags_from_string(s: &str) -> Result<gst::TagList, SerdeError> {
    if s.len() > MAX_STRING {
        return Err(SerdeError::TooLong(s.len()));
    }
    register_types();
    let mut items = Parser {
        s: s.as_bytes(),
        pos: 0,
        lenient: true,
    }
    .items()?;
    if items.len() != 1 {
        return Err(invalid(format!(
            "expected one tag list, found {} items",
            items.len()
        )));
    }
    let it = items.pop().ok_or_else(|| invalid("no tag list"))?;
    if it.features.is_some() {
        return Err(invalid("caps features on a tag list"));
    }
    item_to_tags(&it, gst::TagScope::Stream)
}

/// Caps as a string [`caps_from_string`] reads (GStreamer's caps syntax,
/// features included); `None` if a value is of a type that is not carried
/// (see the module docs) or the string would exceed [`MAX_STRING`].
pub(crate) fn caps_to_string(caps: &gst::CapsRef) -> Option<String> {
    if caps.is_any() {
        return Some("ANY".to_owned());
    }
    if caps.is_empty() {
        return Some("EMPTY".to_owned());
    }
    let mut items = Vec::new();
    for (st, f) in caps.iter_with_features() {
        let mut it = item_from_structure(st, 0)?;
        if f.is_any() {
            it.features = Some(vec!["ANY".to_owned()]);
        } else if !(f.is_empty() || (f.size() == 1 && f.contains("memory:SystemMemory"))) {
            it.features = Some(f.iter().map(|x| x.to_string()).collect());
        }
        items.push(it);
    }
    bounded(print_items(&items))
}

/// Caps from the peer (as [`caps_to_string`] or GStreamer writes fixed
/// caps), parsed without GStreamer's parser, which `g_critical`s on invalid
/// names (also nested ones) and reversed ranges. Ranges are not read:
/// negotiated caps are fixed.
pub(crate) fn caps_from_string(s: &str) -> Result<gst::Caps, SerdeError> {
    match s.trim() {
        "ANY" => return Ok(gst::Caps::new_any()),
        "EMPTY" | "NONE" => return Ok(gst::Caps::new_empty()),
        _ => {}
    }
    let items = parse_items(s)?;
    if items.is_empty() {
        return Err(invalid("no caps"));
    }
    let mut caps = gst::Caps::new_empty();
    {
        let c = caps.make_mut();
        for mut it in items {
            let features = it.features.take().map(|f| {
                if f.iter().any(|x| x == "ANY") {
                    gst::CapsFeatures::new_any()
                } else {
                    gst::CapsFeatures::new(f.iter().map(String::as_str))
                }
            });
            let mut st = item_to_structure(&it, 0)?;
            mark_stream_headers(&mut st);
            c.append_structure_full(st, features);
        }
    }
    Ok(caps)
}

/// Buffers of a caps' `streamheader` are headers: the flag does not survive
/// the string form (GStreamer prints a buffer's bytes only), so it is set
/// again, as the producer's muxer or encoder had it.
fn mark_stream_headers(st: &mut gst::StructureRef) {
    let Ok(headers) = st.get::<gst::Array>("streamheader") else {
        return;
    };
    let marked: Vec<glib::SendValue> = headers
        .iter()
        .map(|v| match v.get::<gst::Buffer>() {
            Ok(mut b) => {
                b.make_mut().set_flags(gst::BufferFlags::HEADER);
                b.to_send_value()
            }
            Err(_) => v.clone(),
        })
        .collect();
    st.set("streamheader", gst::Array::from_values(marked));
}

fn tag_scope_to_int(s: gst::TagScope) -> i32 {
    match s {
        gst::TagScope::Global => 1,
        _ => 0,
    }
}

fn tag_scope_from_int(v: i32) -> Result<gst::TagScope, SerdeError> {
    match v {
        0 => Ok(gst::TagScope::Stream),
        1 => Ok(gst::TagScope::Global),
        _ => Err(invalid(format!("invalid tag scope {v}"))),
    }
}

fn u64_array(it: &Item, name: &str) -> Result<Vec<u64>, SerdeError> {
    it.array(name)?
        .iter()
        .map(|v| match v {
            Val::UInt64(x) => Ok(*x),
            _ => Err(it.wrong(name, "an array of uint64")),
        })
        .collect()
}

fn i32_array(it: &Item, name: &str) -> Result<Vec<i32>, SerdeError> {
    it.array(name)?
        .iter()
        .map(|v| match v {
            Val::Int(x) => Ok(*x),
            _ => Err(it.wrong(name, "an array of int")),
        })
        .collect()
}

/// `u64::MAX` for "none", as GStreamer writes `GST_CLOCK_TIME_NONE`.
fn opt_time(t: Option<gst::ClockTime>) -> Val {
    Val::UInt64(t.map_or(u64::MAX, gst::ClockTime::nseconds))
}

fn time_from(v: u64) -> Option<gst::ClockTime> {
    (v != u64::MAX).then(|| gst::ClockTime::from_nseconds(v))
}

// ---------------------------------------------------------------------------
// Metas.
// ---------------------------------------------------------------------------

/// The metas of `buffer` that cross the boundary, as a string; `None` when it
/// has none of them. A meta that [`apply_metas`] would refuse (a layout that
/// does not fit the buffer, an invalid time code, reference caps with values
/// that are not carried, ...) is left out.
pub(crate) fn metas_to_string(buffer: &gst::BufferRef) -> Option<String> {
    metas_string(buffer, true)
}

/// Like [`metas_to_string`] without the `GstVideoMeta`, for a stream whose
/// frame descriptors carry the plane layout themselves.
pub(crate) fn metas_to_string_without_video(buffer: &gst::BufferRef) -> Option<String> {
    metas_string(buffer, false)
}

fn metas_string(buffer: &gst::BufferRef, with_video: bool) -> Option<String> {
    let mut items = Vec::new();
    if let Some(it) = video_meta_item(buffer).filter(|_| with_video) {
        if check_video_meta(&it, buffer.size(), None).is_ok() {
            items.push(it);
        }
    }
    if let Some(crop) = buffer.meta::<gst_video::VideoCropMeta>() {
        let (x, y, w, h) = crop.rect();
        items.push(
            Item::new("crop-meta")
                .with("x", Val::UInt(x))
                .with("y", Val::UInt(y))
                .with("width", Val::UInt(w))
                .with("height", Val::UInt(h)),
        );
    }
    for m in buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .take(MAX_REFERENCE_METAS)
    {
        let caps = m.reference();
        if caps.size() != 1 || caps.is_any() {
            continue;
        }
        let features_ok = caps
            .features(0)
            .is_none_or(|f| f.is_empty() || (f.size() == 1 && f.contains("memory:SystemMemory")));
        let Some(s) = caps.structure(0).filter(|_| features_ok) else {
            continue;
        };
        let Some(reference) = item_from_structure(s, 1) else {
            continue;
        };
        items.push(
            Item::new("reference-timestamp-meta")
                .with("reference", Val::Struct(Box::new(reference)))
                .with("timestamp", Val::UInt64(m.timestamp().nseconds()))
                .with("duration", opt_time(m.duration())),
        );
    }
    if let Some(it) = audio_meta_item(buffer) {
        if check_audio_meta(&it, buffer.size(), None).is_ok() {
            items.push(it);
        }
    }
    if let Some(it) = timecode_meta_item(buffer) {
        if check_timecode_meta(&it).is_ok() {
            items.push(it);
        }
    }
    bounded(print_items(&items)).filter(|_| !items.is_empty())
}

/// `s` if the receiving side accepts its length.
fn bounded(s: String) -> Option<String> {
    (s.len() <= MAX_STRING).then_some(s)
}

fn video_meta_item(buffer: &gst::BufferRef) -> Option<Item> {
    let m = buffer
        .iter_meta::<gst_video::VideoMeta>()
        .min_by_key(|m| m.id())?;
    let n = m.n_planes() as usize;
    let offsets = m.offset().iter().take(n).map(|&o| Val::UInt64(o as u64));
    let strides = m.stride().iter().take(n).map(|&s| Val::Int(s));
    Some(
        Item::new("video-meta")
            .with("format", Val::Str(m.format().to_str().to_string()))
            .with("width", Val::UInt(m.width()))
            .with("height", Val::UInt(m.height()))
            .with("flags", Val::UInt(m.video_frame_flags().bits()))
            .with("n-planes", Val::UInt(m.n_planes()))
            .with("offsets", Val::Array(offsets.collect()))
            .with("strides", Val::Array(strides.collect())),
    )
}

/// A checked `GstVideoMeta`.
#[derive(Debug)]
struct VideoMetaParams {
    flags: gst_video::VideoFrameFlags,
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    offsets: Vec<usize>,
    strides: Vec<i32>,
}

/// The video info of raw video caps: `Ok(None)` for no caps or caps of
/// another media type, an error for raw video caps that are not a valid
/// fixed video format (metas are then not checkable against them).
fn video_info_of(caps: Option<&gst::CapsRef>) -> Result<Option<gst_video::VideoInfo>, String> {
    let Some(caps) = caps else { return Ok(None) };
    if caps.structure(0).is_none_or(|s| s.name() != "video/x-raw") {
        return Ok(None);
    }
    if !caps.is_fixed() {
        return Err(format!("raw video caps are not fixed: {caps}"));
    }
    gst_video::VideoInfo::from_caps(caps)
        .map(Some)
        .map_err(|_| format!("raw video caps are not a valid video format: {caps}"))
}

/// The audio info of raw audio caps, like [`video_info_of`].
fn audio_info_of(caps: Option<&gst::CapsRef>) -> Result<Option<gst_audio::AudioInfo>, String> {
    let Some(caps) = caps else { return Ok(None) };
    if caps.structure(0).is_none_or(|s| s.name() != "audio/x-raw") {
        return Ok(None);
    }
    if !caps.is_fixed() {
        return Err(format!("raw audio caps are not fixed: {caps}"));
    }
    gst_audio::AudioInfo::from_caps(caps)
        .map(Some)
        .map_err(|_| format!("raw audio caps are not a valid audio format: {caps}"))
}

/// Bytes a row of `plane` needs at `width` (for packed formats without a
/// per-pixel stride: GStreamer's default stride, which is exactly enough).
fn row_bytes(
    finfo: &gst_video::VideoFormatInfo,
    plane: u32,
    width: u32,
    default_stride: i32,
) -> Result<u64, String> {
    let mut need = 0u64;
    for c in 0..finfo.n_components() as usize {
        if finfo.plane()[c] != plane {
            continue;
        }
        let pstride = finfo.pixel_stride()[c];
        if pstride <= 0 {
            return u64::try_from(default_stride).map_err(|_| "negative default stride".to_owned());
        }
        let w = u64::from(finfo.scale_width(c as u8, width));
        let elem = u64::from(finfo.depth()[c] + finfo.shift()[c]).div_ceil(8);
        let last = (pstride as u64)
            .checked_mul(w.saturating_sub(1))
            .and_then(|x| x.checked_add(u64::from(finfo.poffset()[c])))
            .and_then(|x| x.checked_add(elem))
            .ok_or_else(|| "row size overflows".to_owned())?;
        need = need.max(last);
    }
    if need == 0 {
        return u64::try_from(default_stride).map_err(|_| "negative default stride".to_owned());
    }
    Ok(need)
}

/// Checks a `video-meta` item against the buffer size and (if known) the
/// negotiated video info (see [`check_video_layout`]).
fn check_video_meta(
    it: &Item,
    size: usize,
    info: Option<&gst_video::VideoInfo>,
) -> Result<VideoMetaParams, SerdeError> {
    it.check_fields(&[
        "format", "width", "height", "flags", "n-planes", "offsets", "strides",
    ])?;
    let fname = it.str("format")?;
    let format = gst_video::VideoFormat::from_string(fname);
    if matches!(
        format,
        gst_video::VideoFormat::Unknown | gst_video::VideoFormat::Encoded
    ) {
        return Err(invalid(format!("video-meta: unsupported format {fname:?}")));
    }
    let width = it.u32("width")?;
    let height = it.u32("height")?;
    let flags = gst_video::VideoFrameFlags::from_bits_truncate(it.u32("flags")?);
    let n_planes = it.u32("n-planes")?;
    let offsets = u64_array(it, "offsets")?;
    let strides = i32_array(it, "strides")?;
    if offsets.len() != n_planes as usize || strides.len() != n_planes as usize {
        return Err(invalid(format!(
            "video-meta: {} offsets and {} strides for {n_planes} planes",
            offsets.len(),
            strides.len()
        )));
    }
    layout_checks(format, width, height, &offsets, &strides, size, info)
        .map_err(|e| invalid(format!("video-meta: {e}")))?;
    Ok(VideoMetaParams {
        flags,
        format,
        width,
        height,
        offsets: offsets.iter().map(|&o| o as usize).collect(),
        strides,
    })
}

/// Checks a plane layout (a `GstVideoMeta`'s format, size, per-plane offsets
/// and strides) from the peer before it is attached to a buffer of
/// `buffer_size` bytes: every plane's rows — `offset + stride × (rows − 1) +
/// row`, with the format's plane height in rows and the bytes a row of the
/// format needs at `width` (exact, not GStreamer's padded default stride, so
/// tightly packed producers pass) — lie inside the buffer, and no stride is
/// shorter than a row. With raw video `caps`, the layout must match them:
/// same format and plane count, at least their width and height
/// (`gst_video_frame_map` reads with the caps' size and the meta's strides,
/// and `g_critical`s on a mismatch). Paletted and tiled formats are refused.
pub(crate) fn check_video_layout(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    offsets: &[u64],
    strides: &[i32],
    buffer_size: usize,
    caps: Option<&gst::CapsRef>,
) -> Result<(), SerdeError> {
    let info = video_info_of(caps).map_err(invalid)?;
    layout_checks(
        format,
        width,
        height,
        offsets,
        strides,
        buffer_size,
        info.as_ref(),
    )
    .map_err(invalid)
}

fn layout_checks(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    offsets: &[u64],
    strides: &[i32],
    size: usize,
    info: Option<&gst_video::VideoInfo>,
) -> Result<(), String> {
    let fname = format.to_str();
    if matches!(
        format,
        gst_video::VideoFormat::Unknown | gst_video::VideoFormat::Encoded
    ) {
        return Err(format!("unsupported format {fname:?}"));
    }
    let finfo = gst_video::VideoFormatInfo::from_format(format);
    if finfo.has_palette() {
        return Err(format!("paletted format {fname} is not carried"));
    }
    if finfo.is_tiled() {
        return Err(format!("tiled format {fname} is not carried"));
    }
    if !(1..=65536).contains(&width) || !(1..=65536).contains(&height) {
        return Err(format!("size {width}x{height} out of range"));
    }
    let n_planes = finfo.n_planes();
    if offsets.len() != n_planes as usize || strides.len() != n_planes as usize {
        return Err(format!(
            "{} offsets and {} strides: format {fname} has {n_planes} planes",
            offsets.len(),
            strides.len()
        ));
    }
    if let Some(info) = info {
        if info.format() != format
            || info.width() > width
            || info.height() > height
            || info.n_planes() != n_planes
        {
            return Err(format!(
                "{fname} {width}x{height} does not match the caps ({} {}x{})",
                info.format().to_str(),
                info.width(),
                info.height()
            ));
        }
    }
    let defaults = gst_video::VideoInfo::builder(format, width, height)
        .build()
        .map_err(|_| format!("no layout for {fname} {width}x{height}"))?;
    for p in 0..n_planes {
        let pi = p as usize;
        let stride = strides[pi];
        if stride <= 0 {
            return Err(format!("plane {p} has stride {stride}"));
        }
        let row = row_bytes(&finfo, p, width, defaults.stride()[pi])?;
        if (stride as u64) < row {
            return Err(format!(
                "plane {p} stride {stride} is shorter than a row ({row} bytes)"
            ));
        }
        let plane_h = (0..finfo.n_components() as usize)
            .filter(|&c| finfo.plane()[c] == p)
            .map(|c| finfo.scale_height(c as u8, height))
            .max()
            .ok_or_else(|| format!("{fname} plane {p} has no component"))?;
        let end = (stride as u64)
            .checked_mul(u64::from(plane_h.saturating_sub(1)))
            .and_then(|x| x.checked_add(offsets[pi]))
            .and_then(|x| x.checked_add(row));
        match end {
            Some(end) if end <= size as u64 => {}
            _ => {
                return Err(format!(
                    "plane {p} (offset {}, stride {stride}, {plane_h} rows of {row} bytes) \
                     reads past the {size}-byte buffer",
                    offsets[pi]
                ))
            }
        }
    }
    Ok(())
}

fn audio_meta_item(buffer: &gst::BufferRef) -> Option<Item> {
    let m = buffer.meta::<gst_audio::AudioMeta>()?;
    let info = m.info();
    if info.channels() == 0 || info.channels() > 64 {
        return None;
    }
    let positions: Vec<Val> = match info.positions() {
        Some(p) => p.iter().map(|p| Val::Int(p.into_glib())).collect(),
        None => (0..info.channels())
            .map(|_| Val::Int(gst_audio::AudioChannelPosition::None.into_glib()))
            .collect(),
    };
    let layout = match info.layout() {
        gst_audio::AudioLayout::NonInterleaved => "non-interleaved",
        _ => "interleaved",
    };
    let mut it = Item::new("audio-meta")
        .with("format", Val::Str(info.format().to_str().to_string()))
        .with("rate", Val::Int(i32::try_from(info.rate()).ok()?))
        .with("channels", Val::Int(i32::try_from(info.channels()).ok()?))
        .with("layout", Val::Str(layout.to_owned()))
        .with("flags", Val::UInt(info.flags().bits()))
        .with("positions", Val::Array(positions))
        .with("samples", Val::UInt64(m.samples() as u64));
    if !m.offsets().is_empty() {
        it = it.with(
            "offsets",
            Val::Array(m.offsets().iter().map(|&o| Val::UInt64(o as u64)).collect()),
        );
    }
    Some(it)
}

use glib::translate::IntoGlib as _;

/// Checks an `audio-meta` item: a valid format, the channels' samples
/// (at their offsets when planar) inside the buffer, planes not overlapping,
/// the same audio info as the caps (if known).
fn check_audio_meta(
    it: &Item,
    size: usize,
    caps_info: Option<&gst_audio::AudioInfo>,
) -> Result<(gst_audio::AudioInfo, usize, Vec<usize>), SerdeError> {
    it.check_fields(&[
        "format",
        "rate",
        "channels",
        "layout",
        "flags",
        "positions",
        "samples",
        "offsets",
    ])?;
    let fname = it.str("format")?;
    let format = gst_audio::AudioFormat::from_string(fname);
    if matches!(
        format,
        gst_audio::AudioFormat::Unknown | gst_audio::AudioFormat::Encoded
    ) {
        return Err(invalid(format!("audio-meta: unsupported format {fname:?}")));
    }
    let rate = it.i32("rate")?;
    let channels = it.i32("channels")?;
    if rate <= 0 {
        return Err(invalid(format!("audio-meta: rate {rate}")));
    }
    if !(1..=64).contains(&channels) {
        return Err(invalid(format!(
            "audio-meta: {channels} channels (1 to 64)"
        )));
    }
    let layout = match it.str("layout")? {
        "interleaved" => gst_audio::AudioLayout::Interleaved,
        "non-interleaved" => gst_audio::AudioLayout::NonInterleaved,
        l => return Err(invalid(format!("audio-meta: layout {l:?}"))),
    };
    let flags = gst_audio::AudioFlags::from_bits_truncate(it.u32("flags")?);
    let raw_pos = i32_array(it, "positions")?;
    if raw_pos.len() != channels as usize {
        return Err(invalid(format!(
            "audio-meta: {} positions for {channels} channels",
            raw_pos.len()
        )));
    }
    let mut positions = Vec::with_capacity(raw_pos.len());
    for p in raw_pos {
        // NONE (-3) .. the last defined position; anything else is unknown.
        if !(-3..=27).contains(&p) {
            return Err(invalid(format!("audio-meta: channel position {p}")));
        }
        // SAFETY: `p` is one of GstAudioChannelPosition's values (checked
        // above), the representation `from_glib` expects.
        positions.push(unsafe {
            <gst_audio::AudioChannelPosition as glib::translate::FromGlib<i32>>::from_glib(p)
        });
    }
    if !gst_audio::AudioChannelPosition::check_valid_channel_positions(&positions, true) {
        return Err(invalid("audio-meta: invalid channel positions"));
    }
    let info = gst_audio::AudioInfo::builder(format, rate as u32, channels as u32)
        .positions(&positions)
        .flags(flags)
        .layout(layout)
        .build()
        .map_err(|e| invalid(format!("audio-meta: {e}")))?;
    if let Some(ci) = caps_info {
        if *ci != info {
            return Err(invalid("audio-meta: audio info differs from the caps"));
        }
    }
    let samples = it.u64("samples")?;
    let bps = u64::from(info.bps());
    // All channels' samples fit (so one plane's do, without overflow).
    samples
        .checked_mul(u64::from(info.bpf()))
        .filter(|&t| t <= size as u64)
        .ok_or_else(|| {
            invalid(format!(
                "audio-meta: {samples} samples of {} bytes exceed the {size}-byte buffer",
                info.bpf()
            ))
        })?;
    let offsets = u64_array(it, "offsets")?;
    if !offsets.is_empty() {
        if layout != gst_audio::AudioLayout::NonInterleaved {
            return Err(invalid("audio-meta: offsets for interleaved audio"));
        }
        if offsets.len() != channels as usize {
            return Err(invalid(format!(
                "audio-meta: {} offsets for {channels} channels",
                offsets.len()
            )));
        }
        let plane = samples * bps;
        for (i, &o) in offsets.iter().enumerate() {
            if o.checked_add(plane).is_none_or(|end| end > size as u64) {
                return Err(invalid(format!(
                    "audio-meta: channel {i} at offset {o} ({plane} bytes) reads past the {size}-byte buffer"
                )));
            }
            for (j, &q) in offsets.iter().enumerate().take(i) {
                if !(q + plane <= o || o + plane <= q) {
                    return Err(invalid(format!("audio-meta: channels {j} and {i} overlap")));
                }
            }
        }
    }
    Ok((
        info,
        samples as usize,
        offsets.iter().map(|&o| o as usize).collect(),
    ))
}

fn timecode_meta_item(buffer: &gst::BufferRef) -> Option<Item> {
    let m = buffer.meta::<gst_video::VideoTimeCodeMeta>()?;
    // SAFETY: `m` borrows a GstVideoTimeCodeMeta on `buffer`; reading its
    // plain fields is sound (gstreamer-rs's accessors are not used: they
    // panic on a zero fps denominator).
    let tc = unsafe { &(*m.as_ptr()).tc };
    let mut it = Item::new("timecode-meta")
        .with("fps-n", Val::UInt(tc.config.fps_n))
        .with("fps-d", Val::UInt(tc.config.fps_d))
        .with("flags", Val::UInt(tc.config.flags))
        .with("hours", Val::UInt(tc.hours))
        .with("minutes", Val::UInt(tc.minutes))
        .with("seconds", Val::UInt(tc.seconds))
        .with("frames", Val::UInt(tc.frames))
        .with("field-count", Val::UInt(tc.field_count));
    if !tc.config.latest_daily_jam.is_null() {
        // SAFETY: a non-NULL `latest_daily_jam` is a GDateTime the meta
        // holds a reference to; we take our own.
        let jam: glib::DateTime =
            unsafe { glib::translate::from_glib_none(tc.config.latest_daily_jam) };
        it = it
            .with(
                "jam-unix-usec",
                Val::Int64(
                    jam.to_unix()
                        .checked_mul(1_000_000)?
                        .checked_add(i64::from(jam.microsecond()))?,
                ),
            )
            .with(
                "jam-utc-offset",
                Val::Int(i32::try_from(jam.utc_offset().as_seconds()).ok()?),
            );
    }
    Some(it)
}

fn check_timecode_meta(it: &Item) -> Result<gst_video::ValidVideoTimeCode, SerdeError> {
    it.check_fields(&[
        "fps-n",
        "fps-d",
        "flags",
        "hours",
        "minutes",
        "seconds",
        "frames",
        "field-count",
        "jam-unix-usec",
        "jam-utc-offset",
    ])?;
    let fps_n = it.u32("fps-n")?;
    let fps_d = it.u32("fps-d")?;
    if fps_n == 0 || fps_d == 0 || fps_n > i32::MAX as u32 || fps_d > i32::MAX as u32 {
        return Err(invalid(format!("timecode-meta: fps {fps_n}/{fps_d}")));
    }
    let field_count = it.u32("field-count")?;
    if field_count > 2 {
        return Err(invalid(format!("timecode-meta: field count {field_count}")));
    }
    let jam = match (it.get("jam-unix-usec"), it.get("jam-utc-offset")) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            let usec = it.i64("jam-unix-usec")?;
            let offset = it.i32("jam-utc-offset")?;
            if !(-86_399..=86_399).contains(&offset) {
                return Err(invalid(format!("timecode-meta: UTC offset {offset} s")));
            }
            let (sign, abs) = if offset < 0 {
                ('-', -offset)
            } else {
                ('+', offset)
            };
            let tz_name = format!(
                "{sign}{:02}:{:02}:{:02}",
                abs / 3600,
                abs / 60 % 60,
                abs % 60
            );
            #[allow(deprecated)]
            let tz = glib::TimeZone::new(Some(&tz_name));
            let dt = glib::DateTime::from_unix_utc(usec.div_euclid(1_000_000))
                .and_then(|d| {
                    d.add(glib::TimeSpan::from_microseconds(
                        usec.rem_euclid(1_000_000),
                    ))
                })
                .and_then(|d| d.to_timezone(&tz))
                .map_err(|_| invalid("timecode-meta: daily jam out of range"))?;
            Some(dt)
        }
        _ => return Err(invalid("timecode-meta: half a daily jam")),
    };
    let tc = gst_video::VideoTimeCode::new(
        gst::Fraction::new_raw(fps_n as i32, fps_d as i32),
        jam.as_ref(),
        gst_video::VideoTimeCodeFlags::from_bits_truncate(it.u32("flags")?),
        it.u32("hours")?,
        it.u32("minutes")?,
        it.u32("seconds")?,
        it.u32("frames")?,
        field_count,
    );
    gst_video::ValidVideoTimeCode::try_from(tc)
        .map_err(|_| invalid("timecode-meta: invalid time code"))
}

/// A checked meta, ready to attach.
enum Pending {
    Video(VideoMetaParams),
    Crop(u32, u32, u32, u32),
    Reference(gst::Caps, gst::ClockTime, Option<gst::ClockTime>),
    Audio(Box<gst_audio::AudioInfo>, usize, Vec<usize>),
    TimeCode(gst_video::ValidVideoTimeCode),
}

/// Attaches the metas `s` (from [`metas_to_string`] on the peer) to
/// `buffer`, which should carry none of these metas yet, except a
/// `GstVideoMeta` attached from the frame descriptor's plane layout (which a
/// `video-meta` item must then match exactly; it is not attached twice).
/// `caps` are the
/// stream's current caps: pass them whenever there are some, since with raw
/// video or audio caps the metas must agree with them (same format and
/// planes, at least their size, same audio info: downstream code maps
/// buffers with both, and `gst_video_frame_map` / `gst_audio_buffer_map`
/// `g_critical` on a mismatch); raw caps that are not a valid fixed format
/// make video, crop and audio metas refused.
///
/// Everything is checked before anything is attached: on error `buffer` is
/// unchanged. Refused: a video plane whose rows (offset + stride × rows of
/// the format's plane height, the last row as long as the format needs)
/// would read past the buffer or a stride shorter than a row; audio samples
/// (× bytes per frame, or per plane at each offset) past the buffer or
/// overlapping planes; a crop outside the frame (the caps' size, else the
/// video meta's; a crop with neither is refused); an invalid time code;
/// paletted and tiled video formats; anything malformed, unknown or over
/// the limits. Plane heights are the whole frame's, so a buffer holding one
/// field of alternate-interlaced video (`ONEFIELD`, half the rows) is
/// refused.
pub(crate) fn apply_metas(
    buffer: &mut gst::BufferRef,
    s: &str,
    caps: Option<&gst::CapsRef>,
) -> Result<(), SerdeError> {
    let items = parse_items(s)?;
    let vinfo = video_info_of(caps);
    let ainfo = audio_info_of(caps);
    let size = buffer.size();
    let mut pending = Vec::new();
    let mut frame: Option<(u32, u32)> = vinfo
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map(|i| (i.width(), i.height()));
    // A video meta already attached (from a plane layout the frame
    // descriptor carried): a video-meta item must agree with it, and is not
    // attached twice; crops are checked against its size.
    let existing = buffer
        .iter_meta::<gst_video::VideoMeta>()
        .min_by_key(|m| m.id())
        .map(|m| {
            let n = (m.n_planes() as usize).min(4);
            (
                m.format(),
                m.width(),
                m.height(),
                m.offset()[..n].to_vec(),
                m.stride()[..n].to_vec(),
            )
        });
    // The frame a crop refers to is the buffer's: the video meta's size when
    // there is one (videocrop with crop metas sends the uncropped frame
    // with caps of the cropped size), else the caps'.
    if let Some(e) = &existing {
        frame = Some((e.1, e.2));
    }
    let mut seen = [0usize; 5];
    // Video meta first: a crop is checked against its size.
    let mut order: Vec<&Item> = items.iter().filter(|i| i.name == "video-meta").collect();
    order.extend(items.iter().filter(|i| i.name != "video-meta"));
    for it in order {
        let (slot, max) = match it.name.as_str() {
            "video-meta" => (0, 1),
            "crop-meta" => (1, 1),
            "reference-timestamp-meta" => (2, MAX_REFERENCE_METAS),
            "audio-meta" => (3, 1),
            "timecode-meta" => (4, 1),
            n => return Err(invalid(format!("unknown meta {n:?}"))),
        };
        seen[slot] += 1;
        if seen[slot] > max {
            return Err(invalid(format!("too many {} items", it.name)));
        }
        pending.push(match slot {
            0 => {
                let info = vinfo
                    .as_ref()
                    .map_err(|e| invalid(format!("video-meta: {e}")))?;
                let p = check_video_meta(it, size, info.as_ref())?;
                if let Some((format, width, height, offsets, strides)) = &existing {
                    if (*format, *width, *height, offsets, strides)
                        != (p.format, p.width, p.height, &p.offsets, &p.strides)
                    {
                        return Err(invalid("video-meta differs from the buffer's plane layout"));
                    }
                    continue;
                }
                frame = Some((p.width, p.height));
                Pending::Video(p)
            }
            1 => {
                it.check_fields(&["x", "y", "width", "height"])?;
                let (x, y, w, h) = (
                    it.u32("x")?,
                    it.u32("y")?,
                    it.u32("width")?,
                    it.u32("height")?,
                );
                if let Err(e) = &vinfo {
                    return Err(invalid(format!("crop-meta: {e}")));
                }
                let (fw, fh) = frame.ok_or_else(|| {
                    invalid("crop-meta without a frame size (no video caps, no video-meta)")
                })?;
                if w == 0
                    || h == 0
                    || u64::from(x) + u64::from(w) > u64::from(fw)
                    || u64::from(y) + u64::from(h) > u64::from(fh)
                {
                    return Err(invalid(format!(
                        "crop-meta {w}x{h} at ({x}, {y}) is not inside the {fw}x{fh} frame"
                    )));
                }
                Pending::Crop(x, y, w, h)
            }
            2 => {
                it.check_fields(&["reference", "timestamp", "duration"])?;
                let reference = item_to_structure(it.item("reference")?, 1)?;
                let ts = time_from(it.u64("timestamp")?)
                    .ok_or_else(|| invalid("reference-timestamp-meta: no timestamp"))?;
                let duration = time_from(it.u64("duration")?);
                let mut caps = gst::Caps::new_empty();
                caps.make_mut().append_structure(reference);
                Pending::Reference(caps, ts, duration)
            }
            3 => {
                let caps_info = ainfo
                    .as_ref()
                    .map_err(|e| invalid(format!("audio-meta: {e}")))?;
                let (info, samples, offsets) = check_audio_meta(it, size, caps_info.as_ref())?;
                Pending::Audio(Box::new(info), samples, offsets)
            }
            _ => Pending::TimeCode(check_timecode_meta(it)?),
        });
    }
    for p in pending {
        match p {
            Pending::Video(v) => {
                let mut offset = [0usize; 4];
                let mut stride = [0i32; 4];
                offset[..v.offsets.len()].copy_from_slice(&v.offsets);
                stride[..v.strides.len()].copy_from_slice(&v.strides);
                // SAFETY: `buffer` is a valid, writable buffer; the arrays
                // have the GST_VIDEO_MAX_PLANES (4) entries the function reads
                // at most, of which `n_planes` (<= 4, the format's) are set.
                // The function asserts nothing (unlike gstreamer-rs's
                // `add_full`, which wants GStreamer's default plane sizes).
                let meta = unsafe {
                    gst_video::ffi::gst_buffer_add_video_meta_full(
                        buffer.as_mut_ptr(),
                        v.flags.into_glib(),
                        v.format.into_glib(),
                        v.width,
                        v.height,
                        v.offsets.len() as u32,
                        &offset,
                        &stride,
                    )
                };
                if meta.is_null() {
                    return Err(invalid("video-meta: GStreamer refused it"));
                }
            }
            Pending::Crop(x, y, w, h) => {
                gst_video::VideoCropMeta::add(buffer, (x, y, w, h));
            }
            Pending::Reference(caps, ts, d) => {
                gst::ReferenceTimestampMeta::add(buffer, &caps, ts, d);
            }
            Pending::Audio(info, samples, offsets) => {
                gst_audio::AudioMeta::add(buffer, &info, samples, &offsets)
                    .map_err(|e| invalid(format!("audio-meta: {e}")))?;
            }
            Pending::TimeCode(tc) => {
                gst_video::VideoTimeCodeMeta::add(buffer, &tc);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Downstream events.
// ---------------------------------------------------------------------------

fn custom_item(kind: &str, s: Option<&gst::StructureRef>) -> Option<Item> {
    Some(Item::new(kind).with(
        "structure",
        Val::Struct(Box::new(item_from_structure(s?, 1)?)),
    ))
}

fn toc_entry_type_from_int(v: i32) -> Option<gst::TocEntryType> {
    Some(match v {
        -3 => gst::TocEntryType::Angle,
        -2 => gst::TocEntryType::Version,
        -1 => gst::TocEntryType::Edition,
        0 => gst::TocEntryType::Invalid,
        1 => gst::TocEntryType::Title,
        2 => gst::TocEntryType::Track,
        3 => gst::TocEntryType::Chapter,
        _ => return None,
    })
}

fn toc_loop_from_int(v: i32) -> Option<gst::TocLoopType> {
    Some(match v {
        0 => gst::TocLoopType::None,
        1 => gst::TocLoopType::Forward,
        2 => gst::TocLoopType::Reverse,
        3 => gst::TocLoopType::PingPong,
        _ => return None,
    })
}

/// Appends `e` and its sub-entries (pre-order) to `out`, `parent` being the
/// index of its parent in `out` (-1: a top-level entry).
fn flatten_toc_entry(
    e: &gst::TocEntryRef,
    parent: i32,
    depth: usize,
    out: &mut Vec<Val>,
) -> Option<()> {
    if depth > MAX_TOC_DEPTH || out.len() >= MAX_TOC_ENTRIES || e.uid().contains('\0') {
        return None;
    }
    let mut it = Item::new("entry")
        .with("parent", Val::Int(parent))
        .with("type", Val::Int(e.entry_type().into_glib()))
        .with("uid", Val::Str(e.uid().to_owned()));
    if let Some((start, stop)) = e.start_stop_times() {
        it = it
            .with("start", Val::Int64(start))
            .with("stop", Val::Int64(stop));
    }
    if let Some((lt, repeat)) = e.loop_() {
        it = it
            .with("loop", Val::Int(lt.into_glib()))
            .with("repeat", Val::Int(repeat));
    }
    if let Some(tags) = e.tags() {
        it = it
            .with("tags", Val::Struct(Box::new(item_from_tags(&tags))))
            .with("tag-scope", Val::Int(tag_scope_to_int(tags.scope())));
    }
    let me = i32::try_from(out.len()).ok()?;
    out.push(Val::Struct(Box::new(it)));
    for sub in e.sub_entries() {
        flatten_toc_entry(&sub, me, depth + 1, out)?;
    }
    Some(())
}

fn toc_item(toc: &gst::TocRef, updated: bool) -> Option<Item> {
    let mut entries = Vec::new();
    for e in toc.entries() {
        flatten_toc_entry(&e, -1, 1, &mut entries)?;
    }
    let scope = match toc.scope() {
        gst::TocScope::Global => 1,
        _ => 2,
    };
    let mut it = Item::new("toc")
        .with("sticky", Val::Bool(true))
        .with("updated", Val::Bool(updated))
        .with("scope", Val::Int(scope))
        .with("entries", Val::Array(entries));
    if let Some(tags) = toc.tags() {
        it = it
            .with("tags", Val::Struct(Box::new(item_from_tags(&tags))))
            .with("tag-scope", Val::Int(tag_scope_to_int(tags.scope())));
    }
    Some(it)
}

fn tags_of(it: &Item) -> Result<Option<gst::TagList>, SerdeError> {
    match (it.get("tags"), it.get("tag-scope")) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Ok(Some(item_to_tags(
            it.item("tags")?,
            tag_scope_from_int(it.i32("tag-scope")?)?,
        )?)),
        _ => Err(invalid(format!(
            "{}: tags without a scope or the reverse",
            it.name
        ))),
    }
}

/// One checked TOC entry, before the tree is built.
struct FlatEntry {
    /// Taken when the tree is built (each entry once: a sub-entry must be
    /// writable, i.e. referenced only once, to be appended).
    entry: Option<gst::TocEntry>,
    children: Vec<usize>,
}

fn build_toc_entry(
    flat: &mut [FlatEntry],
    i: usize,
    depth: usize,
) -> Result<gst::TocEntry, SerdeError> {
    if depth > MAX_TOC_DEPTH {
        return Err(invalid("toc: too deep"));
    }
    let children = std::mem::take(&mut flat[i].children);
    let mut entry = flat[i]
        .entry
        .take()
        .ok_or_else(|| invalid("toc: an entry is reached twice"))?;
    for c in children {
        let sub = build_toc_entry(flat, c, depth + 1)?;
        entry.make_mut().append_sub_entry(sub);
    }
    Ok(entry)
}

fn toc_from_item(it: &Item) -> Result<gst::Event, SerdeError> {
    it.check_fields(&["sticky", "updated", "scope", "entries", "tags", "tag-scope"])?;
    let updated = it.bool("updated")?;
    let scope = match it.i32("scope")? {
        1 => gst::TocScope::Global,
        2 => gst::TocScope::Current,
        s => return Err(invalid(format!("toc: scope {s}"))),
    };
    let raw = it.array("entries")?;
    if raw.len() > MAX_TOC_ENTRIES {
        return Err(invalid(format!(
            "toc: {} entries (at most {MAX_TOC_ENTRIES})",
            raw.len()
        )));
    }
    let mut flat: Vec<FlatEntry> = Vec::with_capacity(raw.len());
    let mut depth: Vec<usize> = Vec::with_capacity(raw.len());
    let mut roots = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let Val::Struct(e) = v else {
            return Err(invalid("toc: an entry is not a structure"));
        };
        if e.name != "entry" {
            return Err(invalid(format!("toc: entry named {:?}", e.name)));
        }
        e.check_fields(&[
            "parent",
            "type",
            "uid",
            "start",
            "stop",
            "loop",
            "repeat",
            "tags",
            "tag-scope",
        ])?;
        let parent = e.i32("parent")?;
        let d = if parent == -1 {
            roots.push(i);
            1
        } else {
            let p = usize::try_from(parent)
                .ok()
                .filter(|&p| p < i)
                .ok_or_else(|| invalid(format!("toc: entry {i} has parent {parent}")))?;
            flat[p].children.push(i);
            depth[p] + 1
        };
        if d > MAX_TOC_DEPTH {
            return Err(invalid(format!("toc: deeper than {MAX_TOC_DEPTH} levels")));
        }
        let ty = e.i32("type")?;
        let ty =
            toc_entry_type_from_int(ty).ok_or_else(|| invalid(format!("toc: entry type {ty}")))?;
        let mut entry = gst::TocEntry::new(ty, e.str("uid")?);
        {
            let em = entry.make_mut();
            match (e.get("start"), e.get("stop")) {
                (None, None) => {}
                (Some(_), Some(_)) => em.set_start_stop_times(e.i64("start")?, e.i64("stop")?),
                _ => return Err(invalid("toc: start without stop or the reverse")),
            }
            match (e.get("loop"), e.get("repeat")) {
                (None, None) => {}
                (Some(_), Some(_)) => {
                    let l = e.i32("loop")?;
                    let l = toc_loop_from_int(l)
                        .ok_or_else(|| invalid(format!("toc: loop type {l}")))?;
                    em.set_loop(l, e.i32("repeat")?);
                }
                _ => return Err(invalid("toc: loop without repeat or the reverse")),
            }
            if let Some(tags) = tags_of(e)? {
                em.set_tags(tags);
            }
        }
        flat.push(FlatEntry {
            entry: Some(entry),
            children: Vec::new(),
        });
        depth.push(d);
    }
    let mut toc = gst::Toc::new(scope);
    {
        let tm = toc.make_mut();
        if let Some(tags) = tags_of(it)? {
            tm.set_tags(tags);
        }
        for r in roots {
            let e = build_toc_entry(&mut flat, r, 1)?;
            tm.append_entry(e);
        }
    }
    Ok(gst::event::Toc::new(&toc, updated))
}

fn format_from_int(v: i32) -> Option<gst::Format> {
    Some(match v {
        1 => gst::Format::Default,
        2 => gst::Format::Bytes,
        3 => gst::Format::Time,
        4 => gst::Format::Buffers,
        5 => gst::Format::Percent,
        _ => return None,
    })
}

/// The structure name `gst_event_new_protection` makes (it must be a valid
/// name, or GStreamer `g_critical`s).
fn protection_name(system_id: &str, origin: Option<&str>) -> String {
    match origin {
        Some(o) => format!("GstProtectionEvent-{o}-{system_id}"),
        None => format!("GstProtectionEvent-{system_id}"),
    }
}

fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// A serialized downstream event that the frame stream does not carry
/// natively, as a string; `None` for any other event, or one holding values
/// that are not carried (see the module docs).
///
/// Carried: TOC (scope, tags, updated flag, the entry tree with types, uids,
/// start/stop, loops and tags), custom downstream, custom downstream sticky,
/// custom both, stream-group-done, instant-rate-change, segment-done and
/// protection (payloads up to [`MAX_PROTECTION_DATA`] bytes). Each string
/// names the event type and its sticky flag.
pub(crate) fn downstream_event_to_string(ev: &gst::EventRef) -> Option<String> {
    use gst::EventView;
    let item = match ev.view() {
        EventView::Toc(t) => {
            let (toc, updated) = t.toc();
            toc_item(toc, updated)?
        }
        EventView::CustomDownstream(c) => custom_item("custom-downstream", c.structure())?,
        EventView::CustomDownstreamSticky(c) => {
            custom_item("custom-downstream-sticky", c.structure())?
        }
        EventView::CustomBoth(c) => custom_item("custom-both", c.structure())?,
        EventView::StreamGroupDone(_) => {
            let id = ev.structure()?.get::<u32>("group-id").ok()?;
            Item::new("stream-group-done").with("group-id", Val::UInt(id))
        }
        EventView::InstantRateChange(r) => {
            let (rate, new_flags) = r.get();
            if !rate.is_finite() || rate == 0.0 {
                return None;
            }
            Item::new("instant-rate-change")
                .with("rate", Val::Double(rate))
                .with("flags", Val::UInt(new_flags.bits()))
        }
        EventView::SegmentDone(sd) => {
            let pos = sd.get();
            format_from_int(pos.format().into_glib())?;
            Item::new("segment-done")
                .with("format", Val::Int(pos.format().into_glib()))
                .with("position", Val::Int64(pos.value()))
        }
        EventView::Protection(p) => {
            let (system_id, data, origin) = p.get();
            if data.size() > MAX_PROTECTION_DATA || !valid_name(&protection_name(system_id, origin))
            {
                return None;
            }
            let map = data.map_readable().ok()?;
            let mut it = Item::new("protection")
                .with("system-id", Val::Str(system_id.to_owned()))
                .with("data", Val::Str(hex(&map)));
            if let Some(o) = origin {
                it = it.with("origin", Val::Str(o.to_owned()));
            }
            it
        }
        _ => return None,
    };
    let sticky = ev.is_sticky();
    let item = if item.get("sticky").is_some() {
        item
    } else {
        item.with("sticky", Val::Bool(sticky))
    };
    bounded(print_items(&[item]))
}

/// Rebuilds an event from [`downstream_event_to_string`]'s string (from the
/// peer: checked, see the module docs). The rebuilt event's sticky flag must
/// match the string's.
pub(crate) fn downstream_event_from_string(s: &str) -> Result<gst::Event, SerdeError> {
    let it = parse_one(s)?;
    let custom = |it: &Item| -> Result<gst::Structure, SerdeError> {
        it.check_fields(&["sticky", "structure"])?;
        item_to_structure(it.item("structure")?, 1)
    };
    let ev = match it.name.as_str() {
        "toc" => toc_from_item(&it)?,
        "custom-downstream" => gst::event::CustomDownstream::new(custom(&it)?),
        "custom-downstream-sticky" => gst::event::CustomDownstreamSticky::new(custom(&it)?),
        "custom-both" => gst::event::CustomBoth::new(custom(&it)?),
        "stream-group-done" => {
            it.check_fields(&["sticky", "group-id"])?;
            let id = it.u32("group-id")?;
            if id == 0 {
                return Err(invalid("stream-group-done: group id 0"));
            }
            // SAFETY: `id` is not GST_GROUP_ID_INVALID (0), the function's
            // only precondition; it returns a new event (transfer full).
            let ptr = unsafe { gst::ffi::gst_event_new_stream_group_done(id) };
            if ptr.is_null() {
                return Err(invalid("stream-group-done: GStreamer refused it"));
            }
            // SAFETY: `ptr` is a non-NULL event we own (transfer full).
            unsafe { glib::translate::from_glib_full(ptr) }
        }
        "instant-rate-change" => {
            it.check_fields(&["sticky", "rate", "flags"])?;
            let rate = it.f64("rate")?;
            if rate == 0.0 {
                return Err(invalid("instant-rate-change: rate 0"));
            }
            let flags = gst::SegmentFlags::from_bits_truncate(it.u32("flags")?);
            gst::event::InstantRateChange::new(rate, flags)
        }
        "segment-done" => {
            it.check_fields(&["sticky", "format", "position"])?;
            let f = it.i32("format")?;
            let format =
                format_from_int(f).ok_or_else(|| invalid(format!("segment-done: format {f}")))?;
            let pos = it.i64("position")?;
            let max = if format == gst::Format::Percent {
                gst::ffi::GST_FORMAT_PERCENT_MAX
            } else {
                i64::MAX
            };
            if pos != -1 && !(0..=max).contains(&pos) {
                return Err(invalid(format!("segment-done: position {pos}")));
            }
            gst::event::SegmentDone::new(gst::GenericFormattedValue::new(format, pos))
        }
        "protection" => {
            it.check_fields(&["sticky", "system-id", "data", "origin"])?;
            let data = unhex(it.str("data")?)
                .filter(|d| d.len() <= MAX_PROTECTION_DATA)
                .ok_or_else(|| invalid("protection: data is not hex or too long"))?;
            let buf = gst::Buffer::from_mut_slice(data);
            let origin = match it.get("origin") {
                None => None,
                Some(_) => Some(it.str("origin")?),
            };
            let system_id = it.str("system-id")?;
            if !valid_name(&protection_name(system_id, origin)) {
                return Err(invalid(
                    "protection: system id or origin has characters a structure name cannot",
                ));
            }
            gst::event::Protection::builder(system_id, &buf)
                .origin_if_some(origin)
                .build()
        }
        n => return Err(invalid(format!("unknown downstream event {n:?}"))),
    };
    if ev.is_sticky() != it.bool("sticky")? {
        return Err(invalid(format!("{}: wrong sticky flag", it.name)));
    }
    Ok(ev)
}

// ---------------------------------------------------------------------------
// Upstream events.
// ---------------------------------------------------------------------------

/// The structure name navigation events carry.
const NAVIGATION: &str = "application/x-gst-navigation";

/// Checks a navigation event's structure as GStreamer's parsers read it
/// (`gst_navigation_event_parse_*` `g_warning` on a missing field, and C
/// code converts coordinates to integers): a known event type, its fields
/// present with their types, finite coordinates.
fn check_navigation(s: &gst::StructureRef) -> Result<(), SerdeError> {
    if s.name() != NAVIGATION {
        return Err(invalid(format!(
            "navigation: structure named {:?}",
            s.name()
        )));
    }
    let event = s
        .get::<&str>("event")
        .map_err(|_| invalid("navigation: no event string"))?;
    let xy: &[&str] = &["pointer_x", "pointer_y"];
    let (coords, ints, uints, strs): (&[&str], &[&str], &[&str], &[&str]) = match event {
        "key-press" | "key-release" => (&[], &[], &[], &["key"]),
        "mouse-move" => (xy, &[], &[], &[]),
        "mouse-button-press" | "mouse-button-release" => (xy, &["button"], &[], &[]),
        "mouse-scroll" => (
            &[
                "pointer_x",
                "pointer_y",
                "delta_pointer_x",
                "delta_pointer_y",
            ],
            &[],
            &[],
            &[],
        ),
        "command" => (&[], &[], &["command-code"], &[]),
        "touch-down" | "touch-motion" | "touch-up" => (xy, &[], &["identifier"], &[]),
        "touch-frame" | "touch-cancel" => (&[], &[], &[], &[]),
        e => return Err(invalid(format!("navigation: unknown event {e:?}"))),
    };
    let missing = |f: &str| invalid(format!("navigation: {event} without a valid {f:?}"));
    for f in coords {
        if !s.get::<f64>(*f).is_ok_and(f64::is_finite) {
            return Err(missing(f));
        }
    }
    for f in ints {
        s.get::<i32>(*f).map_err(|_| missing(f))?;
    }
    for f in uints {
        s.get::<u32>(*f).map_err(|_| missing(f))?;
    }
    for f in strs {
        s.get::<&str>(*f).map_err(|_| missing(f))?;
    }
    // Pressure: 0 to 1, or NaN when unknown.
    if (event == "touch-down" || event == "touch-motion") && s.get::<f64>("pressure").is_err() {
        return Err(missing("pressure"));
    }
    if s.has_field("state") && s.get::<gst_video::NavigationModifierType>("state").is_err() {
        return Err(missing("state"));
    }
    Ok(())
}

/// An upstream event from a consumer, as a string; `None` for events that are
/// not carried. Carried: force-key-unit (upstream form: running time,
/// all-headers, count), navigation (its structure, if well-formed: see
/// `check_navigation`), QoS (type, proportion,
/// diff, timestamp), reconfigure, custom upstream and custom both.
pub(crate) fn upstream_event_to_string(ev: &gst::EventRef) -> Option<String> {
    use gst::EventView;
    let item = match ev.view() {
        EventView::CustomUpstream(c) => {
            if gst_video::ForceKeyUnitEvent::is(ev) {
                let f = gst_video::UpstreamForceKeyUnitEvent::parse(ev).ok()?;
                Item::new("force-key-unit")
                    .with("running-time", opt_time(f.running_time))
                    .with("all-headers", Val::Bool(f.all_headers))
                    .with("count", Val::UInt(f.count))
            } else {
                custom_item("custom-upstream", c.structure())?
            }
        }
        EventView::CustomBoth(c) => custom_item("custom-both", c.structure())?,
        EventView::Navigation(n) => {
            check_navigation(n.structure()?).ok()?;
            custom_item("navigation", n.structure())?
        }
        EventView::Qos(q) => {
            let (ty, proportion, diff, ts) = q.get();
            if !proportion.is_finite() {
                return None;
            }
            Item::new("qos")
                .with("type", Val::Int(ty.into_glib()))
                .with("proportion", Val::Double(proportion))
                .with("diff", Val::Int64(diff))
                .with("timestamp", opt_time(ts))
        }
        EventView::Reconfigure(_) => Item::new("reconfigure"),
        _ => return None,
    };
    bounded(print_items(&[item]))
}

/// Rebuilds an upstream event from [`upstream_event_to_string`]'s string
/// (from the peer: checked, see the module docs), with gstreamer-rs's typed
/// constructors.
pub(crate) fn upstream_event_from_string(s: &str) -> Result<gst::Event, SerdeError> {
    let it = parse_one(s)?;
    let custom = |it: &Item| -> Result<gst::Structure, SerdeError> {
        it.check_fields(&["structure"])?;
        item_to_structure(it.item("structure")?, 1)
    };
    Ok(match it.name.as_str() {
        "force-key-unit" => {
            it.check_fields(&["running-time", "all-headers", "count"])?;
            gst_video::UpstreamForceKeyUnitEvent::builder()
                .running_time(time_from(it.u64("running-time")?))
                .all_headers(it.bool("all-headers")?)
                .count(it.u32("count")?)
                .build()
        }
        "navigation" => {
            let s = custom(&it)?;
            check_navigation(&s)?;
            gst::event::Navigation::new(s)
        }
        "qos" => {
            it.check_fields(&["type", "proportion", "diff", "timestamp"])?;
            let ty = match it.i32("type")? {
                0 => gst::QOSType::Overflow,
                1 => gst::QOSType::Underflow,
                2 => gst::QOSType::Throttle,
                t => return Err(invalid(format!("qos: type {t}"))),
            };
            let proportion = it.f64("proportion")?;
            if proportion < 0.0 {
                return Err(invalid(format!("qos: proportion {proportion}")));
            }
            let diff = it.i64("diff")?;
            let ts = it.u64("timestamp")?;
            // gst_event_new_qos asserts: diff >= 0 or timestamp + diff >= 0.
            if diff < 0 && diff.unsigned_abs() > ts {
                return Err(invalid(format!("qos: diff {diff} before timestamp {ts}")));
            }
            gst::event::Qos::new(ty, proportion, diff, time_from(ts))
        }
        "reconfigure" => {
            it.check_fields(&[])?;
            gst::event::Reconfigure::new()
        }
        "custom-upstream" => gst::event::CustomUpstream::new(custom(&it)?),
        "custom-both" => gst::event::CustomBoth::new(custom(&it)?),
        n => return Err(invalid(format!("unknown upstream event {n:?}"))),
    })
}

// ---------------------------------------------------------------------------
// QoS from several consumers.
// ---------------------------------------------------------------------------

/// One consumer's latest QoS report.
#[derive(Debug, Clone, Copy)]
struct QosReport {
    proportion: f64,
    at: Instant,
}

/// Decides which consumers' QoS events go upstream when several consumers
/// report.
///
/// Rule: a consumer's QoS event is forwarded when its proportion is at least
/// every other consumer's latest proportion reported within the last
/// [`QosAggregate::WINDOW`] (1 s). So upstream follows the slowest live
/// consumer (the highest proportion: the one that most needs upstream to
/// drop or speed up), and the reports of consumers that keep up are
/// swallowed while a slower one is reporting; once the slow consumer has been
/// silent for a second (or is [forgotten](QosAggregate::forget)), the others'
/// reports go through again. With a single consumer every report is
/// forwarded. Memory: one entry per consumer that reported.
#[derive(Debug, Default)]
pub(crate) struct QosAggregate {
    latest: HashMap<u64, QosReport>,
}

impl QosAggregate {
    /// How long a consumer's report counts against the others'.
    pub(crate) const WINDOW: Duration = Duration::from_secs(1);

    /// No report yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records consumer `consumer`'s QoS report (the `proportion` of its QoS
    /// event; the rule needs neither its diff nor its timestamp, which the
    /// forwarded event carries as they are) made at `now`; `true` if that
    /// event should be forwarded upstream. A non-finite or negative
    /// proportion is never forwarded.
    pub(crate) fn offer(&mut self, consumer: u64, proportion: f64, now: Instant) -> bool {
        if !proportion.is_finite() || proportion < 0.0 {
            return false;
        }
        self.latest
            .retain(|_, r| now.saturating_duration_since(r.at) <= Self::WINDOW);
        self.latest.insert(
            consumer,
            QosReport {
                proportion,
                at: now,
            },
        );
        self.latest
            .iter()
            .all(|(&c, r)| c == consumer || r.proportion <= proportion)
    }

    /// Like [`offer`](Self::offer) for a QoS event; `false` for any other
    /// event.
    pub(crate) fn offer_event(&mut self, consumer: u64, ev: &gst::EventRef, now: Instant) -> bool {
        match ev.view() {
            gst::EventView::Qos(q) => {
                let (_, proportion, _, _) = q.get();
                self.offer(consumer, proportion, now)
            }
            _ => false,
        }
    }

    /// Drops a consumer that went away: its reports no longer count.
    pub(crate) fn forget(&mut self, consumer: u64) {
        self.latest.remove(&consumer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst_video::prelude::*;

    /// GStreamer initialised, with every `g_critical` fatal (as under
    /// `G_DEBUG=fatal-criticals`), so a test that provokes one aborts.
    fn init() {
        gst::init().expect("gst init");
        glib::log_set_always_fatal(glib::LogLevels::LEVEL_CRITICAL | glib::LogLevels::LEVEL_ERROR);
    }

    fn i420_caps(w: i32, h: i32) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", w)
            .field("height", h)
            .field("framerate", gst::Fraction::new(30, 1))
            .build()
    }

    const VP9_SIZE: usize = 28_831;
    const VP9_OFFSETS: [usize; 3] = [1552, 9232, 11232];
    const VP9_STRIDES: [i32; 3] = [96, 48, 48];

    /// A buffer laid out like vp9dec's 66x50 I420 output: padded planes, a
    /// `GstVideoMeta` with their offsets and strides, a byte pattern.
    fn vp9_like_buffer() -> gst::Buffer {
        let data: Vec<u8> = (0..VP9_SIZE).map(|i| (i * 7 % 251) as u8).collect();
        let mut buf = gst::Buffer::from_mut_slice(data);
        gst_video::VideoMeta::add_full(
            buf.get_mut().expect("writable"),
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::I420,
            66,
            50,
            &VP9_OFFSETS,
            &VP9_STRIDES,
        )
        .expect("video meta");
        buf
    }

    /// A buffer with the same bytes as `src` and no metas (what the
    /// receiving side gets from the shared memory).
    fn bare_copy(src: &gst::BufferRef) -> gst::Buffer {
        let map = src.map_readable().expect("map");
        gst::Buffer::from_mut_slice(map.to_vec())
    }

    fn video_meta_string(format: &str, w: u32, h: u32, offsets: &[u64], strides: &[i32]) -> String {
        let o: Vec<String> = offsets.iter().map(|x| x.to_string()).collect();
        let s: Vec<String> = strides.iter().map(|x| x.to_string()).collect();
        format!(
            "video-meta, format=(string){format}, width=(uint){w}, height=(uint){h}, flags=(uint)0, \
             n-planes=(uint){}, offsets=(uint64)< {} >, strides=(int)< {} >",
            offsets.len(),
            o.join(", "),
            s.join(", ")
        )
    }

    #[test]
    fn every_carried_value_type_round_trips_through_the_text_form() {
        init();
        let nested = gst::Structure::builder("inner")
            .field(
                "deep",
                gst::Structure::builder("deeper").field("x", 1i32).build(),
            )
            .build();
        let flags: glib::Value =
            flags_value(gst_video::NavigationModifierType::static_type(), 5).expect("flags value");
        let mut s = gst::Structure::builder("my/custom.name:1+x")
            .field("i", -5i32)
            .field("u", u32::MAX)
            .field("i64", i64::MIN)
            .field("u64", u64::MAX)
            .field("b", true)
            .field("d", 0.1f64)
            .field("tiny", 5e-324f64)
            .field(
                "str",
                "quote \" backslash \\ newline \n tab \t é ✓ ; , = < > [ ]",
            )
            .field("empty", "")
            .field("frac", gst::Fraction::new(30000, 1001))
            .field("neg-frac", gst::Fraction::new(-1, 3))
            .field("mask", gst::Bitmask::new(0x8000_0000_0000_0003))
            .field("nested", nested)
            .field("format", gst::Format::Time)
            .field("arr", gst::Array::new([1u64, 2, u64::MAX]))
            .field("empty-arr", gst::Array::new(Vec::<i32>::new()))
            .field("list", gst::List::new(["a", "b c"]))
            .field(
                "structs",
                gst::Array::new([
                    gst::Structure::new_empty("s1"),
                    gst::Structure::builder("s2").field("v", 2i32).build(),
                ]),
            )
            .build();
        // SAFETY: a flags value holds a plain integer.
        s.set_value("flags", unsafe {
            <glib::SendValue as glib::translate::UnsafeFrom<_>>::unsafe_from(flags.into_raw())
        });
        let item = item_from_structure(&s, 1).expect("carried");
        let text = print_items(&[item]);
        let back = item_to_structure(&parse_one(&text).expect("parses"), 1).expect("builds");
        assert_eq!(back, s, "{text}");
        // Printing is stable, parsing is exact.
        assert_eq!(
            print_items(&[item_from_structure(&back, 1).expect("again")]),
            text
        );
    }

    #[test]
    fn structures_with_values_that_are_not_carried_give_none() {
        init();
        for s in [
            gst::Structure::builder("x")
                .field("caps", gst::Caps::new_any())
                .build(),
            gst::Structure::builder("x").field("f32", 1.5f32).build(),
            gst::Structure::builder("x")
                .field("range", gst::IntRange::new(1i32, 5))
                .build(),
            gst::Structure::builder("x")
                .field("dt", gst::DateTime::from_ymd(2020, 1, 2).expect("date"))
                .build(),
        ] {
            assert!(item_from_structure(&s, 1).is_none(), "{s}");
            let ev = gst::event::CustomDownstream::new(s);
            assert_eq!(downstream_event_to_string(&ev), None);
        }
    }

    #[test]
    fn invalid_names_and_syntax_are_refused_without_a_critical() {
        init();
        for s in [
            "1abc, a=(int)1",
            "abc, 1a=(int)1",
            "abc, a=(int)1, a=(int)2",
            "abc, a=(structure)[1x, b=(int)2]",
            "abc, a=(GstNoSuchType)1",
            "abc, a=(GstObject)1",
            "abc, a=(GstFormat)99",
            "abc, a=(GstNavigationModifierType)4294967295",
            "abc, a=(fraction)1/0",
            "abc, a=(fraction)-2147483648/1",
            "abc, a=(int)2147483648",
            "abc, a=(uint)-1",
            "abc, a=(double)1.2.3",
            "abc, a=(string)\"nul \\000 byte\"",
            "abc, a=(string)\"bad utf8 \\377\"",
            "abc, a=(string)\"unterminated",
            "abc, a=(int)< 1, (int)2 >",
            "abc, a=(int)< < 1 > >",
            "abc, a=(boolean)yes",
            "abc, a=(bitmask)123",
            "abc, a=int)1",
            "abc a=(int)1",
            "",
        ] {
            assert!(
                parse_one(s).and_then(|i| item_to_structure(&i, 1)).is_err(),
                "accepted {s:?}"
            );
            assert!(downstream_event_from_string(s).is_err(), "{s:?}");
            assert!(upstream_event_from_string(s).is_err(), "{s:?}");
            let mut b = gst::Buffer::with_size(16).expect("buffer");
            let r = apply_metas(b.get_mut().expect("writable"), s, None);
            assert!(s.is_empty() || r.is_err(), "{s:?}");
        }
    }

    #[test]
    fn limits_on_length_depth_and_counts_are_enforced() {
        init();
        let long = format!(
            "custom-both, sticky=(boolean)false, structure=(structure)[x, s=(string)\"{}\"]",
            "a".repeat(MAX_STRING)
        );
        assert!(matches!(
            downstream_event_from_string(&long),
            Err(SerdeError::TooLong(_))
        ));
        let mut deep = String::from("x");
        for _ in 0..MAX_DEPTH + 2 {
            deep = format!("x, a=(structure)[{deep}]");
        }
        assert!(parse_one(&deep).is_err());
        let many: Vec<String> = (0..=MAX_ITEMS).map(|i| i.to_string()).collect();
        let s = format!("x, a=(int)< {} >", many.join(", "));
        assert!(parse_one(&s).is_err());
        let s = format!("x, a=(int)< {} >", many[..MAX_ITEMS].join(", "));
        assert!(parse_one(&s).is_ok());
    }

    fn caps_cases() -> Vec<gst::Caps> {
        register_types();
        let mut multiview = i420_caps(64, 48);
        // SAFETY: the value is initialised to a GstFlagSet subtype.
        let flags = unsafe {
            let t = glib::Type::from_name("GstVideoMultiviewFlagsSet").expect("type");
            let mut v = glib::Value::from_type(t);
            gst::ffi::gst_value_set_flagset(
                glib::translate::ToGlibPtrMut::to_glib_none_mut(&mut v).0,
                0x4,
                0xffff_ffff,
            );
            <glib::SendValue as glib::translate::UnsafeFrom<_>>::unsafe_from(v.into_raw())
        };
        multiview
            .make_mut()
            .structure_mut(0)
            .expect("s")
            .set_value("multiview-flags", flags);
        vec![
            i420_caps(320, 240),
            multiview,
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field(
                    "codec_data",
                    gst::Buffer::from_slice([1u8, 0x64, 0, 0x28, 0xff, 0xe1]),
                )
                .field("level", "4")
                .build(),
            gst::Caps::builder("audio/x-opus")
                .field("channel-mapping-family", 0i32)
                .field(
                    "streamheader",
                    gst::Array::new([
                        gst::Buffer::from_slice(*b"OpusHead"),
                        gst::Buffer::from_slice(*b"OpusTags"),
                    ]),
                )
                .build(),
            planar_f32_info(48000).to_caps().expect("caps"),
            gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("rate", 8000i32)
                .field("channels", 3i32)
                .field("channel-mask", gst::Bitmask::new(0x7))
                .field("layout", "interleaved")
                .build(),
            gst::Caps::builder("video/x-raw")
                .features(["memory:DMABuf", "meta:GstVideoOverlayComposition"])
                .field("format", "NV12")
                .build(),
            gst::Caps::builder("video/x-raw")
                .any_features()
                .field("s", "with \"quotes\", commas; and é")
                .field("d", 0.25f64)
                .field("big", u64::MAX)
                .field("neg", i64::MIN)
                .build(),
            gst::Caps::builder_full()
                .structure(gst::Structure::new_empty("a/b"))
                .structure(gst::Structure::builder("c/d").field("x", 1i32).build())
                .build(),
            gst::Caps::new_any(),
            gst::Caps::new_empty(),
        ]
    }

    #[test]
    fn caps_round_trip_from_our_strings_and_gstreamers() {
        init();
        for caps in caps_cases() {
            let ours = caps_to_string(&caps).expect("carried");
            assert_eq!(caps_from_string(&ours).expect(&ours), caps, "{ours}");
            let theirs = caps.to_string();
            assert_eq!(caps_from_string(&theirs).expect(&theirs), caps, "{theirs}");
            assert_eq!(crate::peer::parse_caps(&theirs), Some(caps));
        }
        // Hand-written caps: types inferred as GStreamer infers them.
        for s in [
            "video/x-raw,format=GRAY8,width=4,height=4,framerate=30/1",
            "audio/x-raw, rate=48000, scale=0.5, flag=true, name=(string)\"a b\", hex=0x10",
            "x/y, a=< 1, 2 >, b={ a, b }",
        ] {
            let want = <gst::Caps as std::str::FromStr>::from_str(s).expect("gst parses");
            assert_eq!(caps_from_string(s).expect(s), want, "{s}");
        }
        assert!(caps_from_string("x/y, a=< 1, b >").is_err());
    }

    #[test]
    fn hostile_caps_are_refused_without_a_critical() {
        init();
        for s in [
            "1abc",
            "video/x-raw, a=(structure)\"1x, b=(int)2;\"",
            "video/x-raw, a=(structure)[1x, b=(int)2]",
            "x, a=(GstCaps)\"1x\"",
            "x, a=(int)[ 1, 0 ]",
            "x, a=(int)[ 1, 2 ]",
            "x, a=(fraction)1/0",
            "x, a=(GstFormat)nope",
            "video/x-raw(1bad:feature), a=(int)1",
            "video/x-raw(memory:), a=(int)1",
            "video/x-raw(memory:Sys-Mem), a=(int)1",
            "video/x-raw, a=(string)\"nul\\000\"",
            "video/x-raw, a=(buffer)abc",
            "video/x-raw, a=(date)2020-02-30",
            "video/x-raw, f=(GstVideoMultiviewFlagsSet)zz:ff",
            "video/x-raw, f=(GstFlagSet)0:ff",
            "video/x-raw, a=(float)1.5",
            "video/x-raw; ; 1x",
            "",
        ] {
            assert!(caps_from_string(s).is_err(), "{s:?}");
            assert!(crate::peer::parse_caps(s).is_none(), "{s:?}");
        }
    }

    #[test]
    fn tag_lists_keep_what_is_carried_and_drop_the_rest() {
        init();
        crate::clock::register_tags();
        let mut tags = gst::TagList::new();
        {
            let t = tags.get_mut().expect("writable");
            t.add::<gst::tags::Title>(&"Song \"one\"", gst::TagMergeMode::Append);
            t.add::<gst::tags::Artist>(&"A", gst::TagMergeMode::Append);
            t.add::<gst::tags::Artist>(&"B", gst::TagMergeMode::Append);
            t.add::<gst::tags::TrackNumber>(&7, gst::TagMergeMode::Append);
            t.add::<gst::tags::Date>(
                &glib::Date::from_dmy(29, glib::DateMonth::February, 2024).expect("date"),
                gst::TagMergeMode::Append,
            );
            t.add::<gst::tags::DateTime>(
                &gst::DateTime::from_ymd(2024, 2, 29).expect("dt"),
                gst::TagMergeMode::Append,
            );
            let sample = gst::Sample::builder()
                .buffer(&gst::Buffer::from_slice([1u8, 2, 3]))
                .caps(&gst::Caps::new_empty_simple("image/png"))
                .build();
            t.add::<gst::tags::Image>(&sample, gst::TagMergeMode::Append);
        }
        for s in [tags_to_string(&tags).expect("fits"), tags.to_string()] {
            let got = tags_from_string(&s).expect(&s);
            assert_eq!(
                got.get::<gst::tags::Title>().expect("title").get(),
                "Song \"one\""
            );
            assert_eq!(got.size::<gst::tags::Artist>(), 2);
            assert_eq!(got.get::<gst::tags::TrackNumber>().expect("n").get(), 7);
            assert_eq!(got.get::<gst::tags::Date>().expect("date").get().day(), 29);
            // Date-times and images are not carried.
            assert!(got.get::<gst::tags::Image>().is_none());
            assert!(got.get::<gst::tags::DateTime>().is_none());
            // clock.rs reads tag lists through the same parser.
            let peer = crate::clock::parse_peer_tags(&s).expect("peer tags");
            assert_eq!(peer.tags.size::<gst::tags::Artist>(), 2);
        }
        for bad in [
            "taglist, title=(structure)\"1x, b=(int)2;\"",
            "taglist, title=(GstCaps)\"1x\"",
            "1taglist, title=(string)x",
            "notags, title=(string)x",
            "taglist, title=(string)\"unterminated",
        ] {
            let r = tags_from_string(bad);
            let kept = r.as_ref().map(|t| t.n_tags()).unwrap_or(0);
            assert_eq!(kept, 0, "{bad}: {r:?}");
            assert!(
                crate::clock::parse_peer_tags(bad).is_none_or(|t| t.tags.n_tags() == 0),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_buffer_without_carried_metas_gives_none() {
        init();
        let buf = gst::Buffer::with_size(100).expect("buffer");
        assert_eq!(metas_to_string(&buf), None);
    }

    #[test]
    fn video_meta_of_a_padded_vp9dec_like_i420_buffer_round_trips_and_maps_the_same_pixels() {
        init();
        let src = vp9_like_buffer();
        let s = metas_to_string(&src).expect("carried");
        let mut dst = bare_copy(&src);
        let caps = i420_caps(66, 50);
        apply_metas(dst.get_mut().expect("writable"), &s, Some(&caps)).expect("applies");
        let m = dst.meta::<gst_video::VideoMeta>().expect("video meta");
        assert_eq!(m.format(), gst_video::VideoFormat::I420);
        assert_eq!((m.width(), m.height(), m.n_planes()), (66, 50, 3));
        assert_eq!(&m.offset()[..3], &VP9_OFFSETS);
        assert_eq!(&m.stride()[..3], &VP9_STRIDES);
        // Downstream maps both the same way.
        let info = gst_video::VideoInfo::from_caps(&caps).expect("info");
        let a =
            gst_video::VideoFrameRef::from_buffer_ref_readable(src.as_ref(), &info).expect("map");
        let b =
            gst_video::VideoFrameRef::from_buffer_ref_readable(dst.as_ref(), &info).expect("map");
        for p in 0..3u32 {
            assert_eq!(a.plane_stride()[p as usize], b.plane_stride()[p as usize]);
            let (pa, pb) = (
                a.plane_data(p).expect("plane"),
                b.plane_data(p).expect("plane"),
            );
            let rows = if p == 0 { 50 } else { 25 };
            let w = if p == 0 { 66 } else { 33 };
            let st = VP9_STRIDES[p as usize] as usize;
            for r in 0..rows {
                assert_eq!(
                    pa[r * st..r * st + w],
                    pb[r * st..r * st + w],
                    "plane {p} row {r}"
                );
            }
        }
        // Without caps too.
        let mut dst2 = bare_copy(&src);
        apply_metas(dst2.get_mut().expect("writable"), &s, None).expect("applies without caps");
    }

    #[test]
    fn a_video_meta_already_attached_from_the_descriptor_is_matched_not_duplicated() {
        init();
        let src = vp9_like_buffer();
        let all = metas_to_string(&src).expect("carried");
        assert_eq!(metas_to_string_without_video(&src), None);
        let mut src2 = src.copy();
        gst_video::VideoCropMeta::add(src2.get_mut().expect("writable"), (0, 0, 8, 8));
        let crop_only = metas_to_string_without_video(&src2).expect("crop");
        assert!(!crop_only.contains("video-meta"), "{crop_only}");
        // The receiver attached the descriptor's layout first.
        let mut dst = bare_copy(&src);
        gst_video::VideoMeta::add_full(
            dst.get_mut().expect("writable"),
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::I420,
            66,
            50,
            &VP9_OFFSETS,
            &VP9_STRIDES,
        )
        .expect("meta");
        apply_metas(dst.get_mut().expect("writable"), &all, None).expect("same layout");
        assert_eq!(dst.iter_meta::<gst_video::VideoMeta>().count(), 1);
        // The crop is checked against the attached meta's frame.
        apply_metas(dst.get_mut().expect("writable"), &crop_only, None).expect("crop");
        let other = all.replace("strides=(int)< 96", "strides=(int)< 97");
        let mut dst = bare_copy(&src);
        gst_video::VideoMeta::add_full(
            dst.get_mut().expect("writable"),
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::I420,
            66,
            50,
            &VP9_OFFSETS,
            &VP9_STRIDES,
        )
        .expect("meta");
        let err = apply_metas(dst.get_mut().expect("writable"), &other, None).expect_err("differs");
        assert!(err.to_string().contains("differs"), "{err}");
    }

    #[test]
    fn check_video_layout_is_exact_at_the_last_row() {
        init();
        use gst_video::VideoFormat::*;
        // RGB 5x2: rows of 15 bytes; GStreamer's default stride is 16.
        assert!(check_video_layout(Rgb, 5, 2, &[0], &[15], 30, None).is_ok());
        assert!(check_video_layout(Rgb, 5, 2, &[0], &[13], 28, None).is_err());
        assert!(check_video_layout(Rgb, 5, 2, &[0], &[15], 29, None).is_err());
        assert!(check_video_layout(Rgb, 5, 2, &[1], &[15], 30, None).is_err());
        let caps = i420_caps(66, 50);
        let o = VP9_OFFSETS.map(|x| x as u64);
        assert!(check_video_layout(I420, 66, 50, &o, &VP9_STRIDES, VP9_SIZE, Some(&caps)).is_ok());
        assert!(check_video_layout(I420, 64, 50, &o, &VP9_STRIDES, VP9_SIZE, Some(&caps)).is_err());
        assert!(check_video_layout(
            Nv12,
            66,
            50,
            &o[..2],
            &VP9_STRIDES[..2],
            VP9_SIZE,
            Some(&caps)
        )
        .is_err());
    }

    #[test]
    fn a_tightly_packed_video_meta_is_accepted() {
        init();
        // 66x50 I420 with strides 66/33/33 and no padding: 4950 bytes, less
        // than GStreamer's default layout (strides rounded up to 4).
        let s = video_meta_string("I420", 66, 50, &[0, 3300, 4125], &[66, 33, 33]);
        let mut b = gst::Buffer::with_size(4950).expect("buffer");
        apply_metas(b.get_mut().expect("writable"), &s, Some(&i420_caps(66, 50))).expect("applies");
        let mut b = gst::Buffer::with_size(4949).expect("buffer");
        assert!(apply_metas(b.get_mut().expect("writable"), &s, None).is_err());
        // Packed formats: YUY2 3 pixels wide needs 8 bytes a row; RGB 3 bytes a pixel.
        let s = video_meta_string("YUY2", 3, 2, &[0], &[8]);
        let mut b = gst::Buffer::with_size(16).expect("buffer");
        apply_metas(b.get_mut().expect("writable"), &s, None).expect("yuy2");
        let s = video_meta_string("YUY2", 3, 2, &[0], &[7]);
        assert!(apply_metas(b.get_mut().expect("writable"), &s, None).is_err());
        let s = video_meta_string("RGB", 5, 2, &[0], &[15]);
        let mut b = gst::Buffer::with_size(30).expect("buffer");
        apply_metas(b.get_mut().expect("writable"), &s, None).expect("rgb");
        let mut b = gst::Buffer::with_size(29).expect("buffer");
        assert!(apply_metas(b.get_mut().expect("writable"), &s, None).is_err());
        // A format without a per-pixel stride (v210) needs GStreamer's stride.
        let s = video_meta_string("v210", 48, 2, &[0], &[128]);
        let mut b = gst::Buffer::with_size(256).expect("buffer");
        apply_metas(b.get_mut().expect("writable"), &s, None).expect("v210");
        let s = video_meta_string("v210", 48, 2, &[0], &[127]);
        assert!(apply_metas(b.get_mut().expect("writable"), &s, None).is_err());
    }

    #[test]
    fn video_metas_that_would_read_past_the_buffer_or_mismatch_the_caps_are_refused() {
        init();
        let o = [1552u64, 9232, 11232];
        let st = [96, 48, 48];
        let caps = i420_caps(66, 50);
        let cases: Vec<(String, Option<&gst::Caps>, &str)> = vec![
            (
                video_meta_string("I420", 66, 50, &[1552, 9232, VP9_SIZE as u64 - 100], &st),
                None,
                "past",
            ),
            (
                video_meta_string("I420", 66, 50, &[1552, 9232, u64::MAX - 10], &st),
                None,
                "past",
            ),
            (
                video_meta_string("I420", 66, 50, &o, &[96, 48, 800]),
                None,
                "past",
            ),
            (
                video_meta_string("I420", 66, 50, &o, &[96, 48, i32::MAX]),
                None,
                "past",
            ),
            (
                video_meta_string("I420", 66, 50, &o, &[96, 48, 32]),
                None,
                "shorter than a row",
            ),
            (
                video_meta_string("I420", 66, 50, &o, &[96, 48, 0]),
                None,
                "stride 0",
            ),
            (
                video_meta_string("I420", 66, 50, &o, &[96, 48, -48]),
                None,
                "stride -48",
            ),
            (video_meta_string("I420", 66, 500, &o, &st), None, "past"),
            (
                video_meta_string("I420", 66, 50, &o[..2], &st[..2]),
                None,
                "planes",
            ),
            (
                video_meta_string("I420", 0, 50, &o, &st),
                None,
                "out of range",
            ),
            (
                video_meta_string("I420", 66, 49, &o, &st),
                Some(&caps),
                "does not match the caps",
            ),
            (
                video_meta_string("YV12", 66, 50, &o, &st),
                Some(&caps),
                "does not match the caps",
            ),
            (
                video_meta_string("NOPE", 66, 50, &o, &st),
                None,
                "unsupported format",
            ),
            (
                video_meta_string("NV12_64Z32", 64, 64, &[0, 4096], &[64, 64]),
                None,
                "tiled",
            ),
        ];
        for (s, caps, why) in cases {
            let mut b = gst::Buffer::with_size(VP9_SIZE).expect("buffer");
            let err = apply_metas(b.get_mut().expect("writable"), &s, caps.map(|c| c.as_ref()))
                .expect_err(&s)
                .to_string();
            assert!(err.contains(why), "{s}: {err}");
            assert!(b.meta::<gst_video::VideoMeta>().is_none());
        }
    }

    #[test]
    fn paletted_formats_and_invalid_raw_caps_make_video_metas_refused() {
        init();
        let mut b = gst::Buffer::with_size(VP9_SIZE).expect("buffer");
        let s = video_meta_string("RGB8P", 16, 16, &[0, 256], &[16, 4]);
        let err = apply_metas(b.get_mut().expect("writable"), &s, None).expect_err("palette");
        assert!(err.to_string().contains("paletted"), "{err}");
        let good = video_meta_string("I420", 66, 50, &VP9_OFFSETS.map(|x| x as u64), &VP9_STRIDES);
        let unfixed = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", gst::IntRange::new(1i32, 100))
            .field("height", 50i32)
            .build();
        let invalid_caps = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .build();
        let encoded = gst::Caps::new_empty_simple("video/x-vp9");
        for (caps, ok) in [(&unfixed, false), (&invalid_caps, false), (&encoded, true)] {
            let mut b = gst::Buffer::with_size(VP9_SIZE).expect("buffer");
            let r = apply_metas(b.get_mut().expect("writable"), &good, Some(caps));
            assert_eq!(r.is_ok(), ok, "{caps}: {r:?}");
            // A crop needs a frame size: none from these caps.
            let crop = "crop-meta, x=(uint)0, y=(uint)0, width=(uint)2, height=(uint)2";
            let mut b = gst::Buffer::with_size(VP9_SIZE).expect("buffer");
            let r = apply_metas(b.get_mut().expect("writable"), crop, Some(caps));
            assert!(r.is_err(), "{caps}: {r:?}");
        }
    }

    #[test]
    fn strings_over_the_limit_are_not_produced() {
        init();
        let big = gst::Structure::builder("big")
            .field("s", "x".repeat(MAX_STRING))
            .build();
        assert_eq!(
            downstream_event_to_string(&gst::event::CustomDownstream::new(big.clone())),
            None
        );
        assert_eq!(
            upstream_event_to_string(&gst::event::CustomUpstream::new(big)),
            None
        );
    }

    #[test]
    fn metas_the_sender_cannot_vouch_for_are_left_out() {
        init();
        // A video meta whose planes do not fit its buffer (an upstream bug).
        let mut buf = gst::Buffer::with_size(5200).expect("buffer");
        gst_video::VideoMeta::add_full(
            buf.get_mut().expect("writable"),
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::I420,
            66,
            50,
            &[0, 3400, 5000],
            &[68, 36, 36],
        )
        .expect("meta");
        assert_eq!(metas_to_string(&buf), None);
    }

    #[test]
    fn crop_meta_round_trips_and_must_lie_inside_the_frame() {
        init();
        let mut src = vp9_like_buffer();
        gst_video::VideoCropMeta::add(src.get_mut().expect("writable"), (2, 4, 60, 40));
        let s = metas_to_string(&src).expect("carried");
        let mut dst = bare_copy(&src);
        apply_metas(
            dst.get_mut().expect("writable"),
            &s,
            Some(&i420_caps(66, 50)),
        )
        .expect("applies");
        assert_eq!(
            dst.meta::<gst_video::VideoCropMeta>().expect("crop").rect(),
            (2, 4, 60, 40)
        );

        // Checked against the caps' frame, else the video meta's.
        let crop = |x: u32, y: u32, w: u32, h: u32| {
            format!("crop-meta, x=(uint){x}, y=(uint){y}, width=(uint){w}, height=(uint){h}")
        };
        let caps = i420_caps(66, 50);
        for (s, ok) in [
            (crop(0, 0, 66, 50), true),
            (crop(1, 0, 66, 50), false),
            (crop(0, 1, 66, 50), false),
            (crop(0, 0, 0, 50), false),
            (crop(u32::MAX, 0, 2, 2), false),
        ] {
            let mut b = gst::Buffer::with_size(10).expect("buffer");
            let r = apply_metas(b.get_mut().expect("writable"), &s, Some(&caps));
            assert_eq!(r.is_ok(), ok, "{s}: {r:?}");
        }
        let mut b = gst::Buffer::with_size(10).expect("buffer");
        let err = apply_metas(b.get_mut().expect("writable"), &crop(0, 0, 2, 2), None)
            .expect_err("no frame");
        assert!(err.to_string().contains("without a frame size"), "{err}");
        let s = format!(
            "{}; {}",
            crop(0, 0, 66, 50),
            video_meta_string("I420", 66, 50, &VP9_OFFSETS.map(|x| x as u64), &VP9_STRIDES)
        );
        let mut b = gst::Buffer::with_size(VP9_SIZE).expect("buffer");
        apply_metas(b.get_mut().expect("writable"), &s, None).expect("frame from the video meta");
        let s = format!(
            "{}; {}",
            crop(0, 0, 67, 50),
            video_meta_string("I420", 66, 50, &VP9_OFFSETS.map(|x| x as u64), &VP9_STRIDES)
        );
        let mut b = gst::Buffer::with_size(VP9_SIZE).expect("buffer");
        assert!(apply_metas(b.get_mut().expect("writable"), &s, None).is_err());
        assert!(
            b.meta::<gst_video::VideoMeta>().is_none(),
            "nothing attached on error"
        );
    }

    #[test]
    fn reference_timestamp_metas_round_trip() {
        init();
        let ntp = gst::Caps::builder("timestamp/x-ntp")
            .field("host", "pool.ntp.org")
            .field("port", 123i32)
            .build();
        let unix = gst::Caps::new_empty_simple("timestamp/x-unix");
        let mut src = gst::Buffer::with_size(10).expect("buffer");
        {
            let b = src.get_mut().expect("writable");
            gst::ReferenceTimestampMeta::add(
                b,
                &ntp,
                gst::ClockTime::from_nseconds(123_456_789),
                gst::ClockTime::from_mseconds(40),
            );
            gst::ReferenceTimestampMeta::add(
                b,
                &unix,
                gst::ClockTime::from_seconds(1_700_000_000),
                None,
            );
        }
        let s = metas_to_string(&src).expect("carried");
        let mut dst = bare_copy(&src);
        apply_metas(dst.get_mut().expect("writable"), &s, None).expect("applies");
        let got: Vec<_> = dst
            .iter_meta::<gst::ReferenceTimestampMeta>()
            .map(|m| (m.reference().to_owned(), m.timestamp(), m.duration()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    ntp,
                    gst::ClockTime::from_nseconds(123_456_789),
                    Some(gst::ClockTime::from_mseconds(40))
                ),
                (unix, gst::ClockTime::from_seconds(1_700_000_000), None),
            ]
        );
        let bad = "reference-timestamp-meta, reference=(structure)[timestamp/x-unix], timestamp=(uint64)18446744073709551615, duration=(uint64)1";
        assert!(apply_metas(dst.get_mut().expect("writable"), bad, None).is_err());
    }

    fn planar_f32_info(rate: u32) -> gst_audio::AudioInfo {
        gst_audio::AudioInfo::builder(gst_audio::AudioFormat::F32le, rate, 2)
            .positions(&[
                gst_audio::AudioChannelPosition::FrontLeft,
                gst_audio::AudioChannelPosition::FrontRight,
            ])
            .layout(gst_audio::AudioLayout::NonInterleaved)
            .build()
            .expect("info")
    }

    #[test]
    fn planar_audio_meta_round_trips_with_its_offsets() {
        init();
        let info = planar_f32_info(48000);
        let mut src = gst::Buffer::with_size(1024).expect("buffer");
        // 64 samples of 4 bytes per plane, the second plane after a gap.
        gst_audio::AudioMeta::add(src.get_mut().expect("writable"), &info, 64, &[0, 512])
            .expect("meta");
        let s = metas_to_string(&src).expect("carried");
        let mut dst = bare_copy(&src);
        let caps = info.to_caps().expect("caps");
        apply_metas(dst.get_mut().expect("writable"), &s, Some(&caps)).expect("applies");
        let m = dst.meta::<gst_audio::AudioMeta>().expect("audio meta");
        assert_eq!(m.info(), info);
        assert_eq!(m.samples(), 64);
        assert_eq!(m.offsets(), &[0, 512]);
        // Interleaved, no offsets.
        let info = gst_audio::AudioInfo::builder(gst_audio::AudioFormat::S16le, 44100, 2)
            .build()
            .expect("info");
        let mut src = gst::Buffer::with_size(400).expect("buffer");
        gst_audio::AudioMeta::add(src.get_mut().expect("writable"), &info, 100, &[]).expect("meta");
        let s = metas_to_string(&src).expect("carried");
        let mut dst = bare_copy(&src);
        apply_metas(dst.get_mut().expect("writable"), &s, None).expect("applies");
        let m = dst.meta::<gst_audio::AudioMeta>().expect("audio meta");
        assert_eq!((m.info(), m.samples()), (info, 100));
        // Unpositioned channels (10 channels, channel mask 0).
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 8000i32)
            .field("channels", 10i32)
            .field("channel-mask", gst::Bitmask::new(0))
            .field("layout", "interleaved")
            .build();
        let info = gst_audio::AudioInfo::from_caps(&caps).expect("info");
        assert!(info.is_unpositioned());
        let mut src = gst::Buffer::with_size(200).expect("buffer");
        gst_audio::AudioMeta::add(src.get_mut().expect("writable"), &info, 10, &[]).expect("meta");
        let s = metas_to_string(&src).expect("carried");
        let mut dst = bare_copy(&src);
        apply_metas(dst.get_mut().expect("writable"), &s, Some(&caps)).expect("applies");
        let m = dst.meta::<gst_audio::AudioMeta>().expect("audio meta");
        assert_eq!((m.info(), m.samples()), (info, 10));
    }

    #[test]
    fn audio_metas_past_the_buffer_overlapping_or_mismatching_the_caps_are_refused() {
        init();
        let good = "audio-meta, format=(string)F32LE, rate=(int)48000, channels=(int)2, \
                    layout=(string)non-interleaved, flags=(uint)0, positions=(int)< 1, 2 >, \
                    samples=(uint64)64, offsets=(uint64)< 0, 512 >";
        let mut b = gst::Buffer::with_size(1024).expect("buffer");
        apply_metas(b.get_mut().expect("writable"), good, None).expect("good one");
        let other_caps = planar_f32_info(44100).to_caps().expect("caps");
        let cases: Vec<(String, Option<&gst::Caps>, &str)> = vec![
            (good.replace("< 0, 512 >", "< 0, 800 >"), None, "reads past"),
            (
                good.replace("< 0, 512 >", "< 0, 18446744073709551615 >"),
                None,
                "reads past",
            ),
            (good.replace("< 0, 512 >", "< 0, 100 >"), None, "overlap"),
            (
                good.replace("< 0, 512 >", "< 0 >"),
                None,
                "offsets for 2 channels",
            ),
            (
                good.replace("samples=(uint64)64", "samples=(uint64)200"),
                None,
                "exceed",
            ),
            (
                good.replace("samples=(uint64)64", "samples=(uint64)4611686018427387904"),
                None,
                "exceed",
            ),
            (
                good.replace("< 1, 2 >", "< 1, 1 >"),
                None,
                "channel positions",
            ),
            (
                good.replace("< 1, 2 >", "< 1, 99 >"),
                None,
                "channel position",
            ),
            (
                good.replace("channels=(int)2", "channels=(int)65"),
                None,
                "channels",
            ),
            (good.replace("rate=(int)48000", "rate=(int)0"), None, "rate"),
            (good.replace("F32LE", "nope"), None, "unsupported format"),
            (
                good.replace("non-interleaved", "interleaved"),
                None,
                "offsets for interleaved",
            ),
            (good.to_owned(), Some(&other_caps), "differs from the caps"),
        ];
        for (s, caps, why) in cases {
            let mut b = gst::Buffer::with_size(1024).expect("buffer");
            let err = apply_metas(b.get_mut().expect("writable"), &s, caps.map(|c| c.as_ref()))
                .expect_err(&s)
                .to_string();
            assert!(err.contains(why), "{s}: {err}");
            assert!(b.meta::<gst_audio::AudioMeta>().is_none());
        }
    }

    #[test]
    fn timecode_meta_round_trips_with_its_daily_jam() {
        init();
        #[allow(deprecated)]
        let tz = glib::TimeZone::new(Some("+02:00"));
        let jam = glib::DateTime::new(&tz, 2024, 5, 6, 7, 8, 9.25).expect("date");
        for jam in [Some(jam), None] {
            let tc = gst_video::VideoTimeCode::new(
                gst::Fraction::new(30000, 1001),
                jam.as_ref(),
                gst_video::VideoTimeCodeFlags::DROP_FRAME,
                1,
                2,
                3,
                4,
                0,
            );
            let tc = gst_video::ValidVideoTimeCode::try_from(tc).expect("valid");
            let mut src = gst::Buffer::with_size(10).expect("buffer");
            gst_video::VideoTimeCodeMeta::add(src.get_mut().expect("writable"), &tc);
            let s = metas_to_string(&src).expect("carried");
            let mut dst = bare_copy(&src);
            apply_metas(dst.get_mut().expect("writable"), &s, None).expect("applies");
            let got = dst
                .meta::<gst_video::VideoTimeCodeMeta>()
                .expect("meta")
                .tc();
            assert_eq!(got.to_string(), tc.to_string());
            assert_eq!(
                (got.fps(), got.flags(), got.field_count()),
                (tc.fps(), tc.flags(), 0)
            );
            match (got.latest_daily_jam(), jam) {
                (Some(g), Some(j)) => {
                    assert_eq!(g.to_unix(), j.to_unix());
                    assert_eq!(g.microsecond(), j.microsecond());
                    assert_eq!(g.utc_offset(), j.utc_offset());
                }
                (None, None) => {}
                other => panic!("jam {other:?}"),
            }
        }
        let bad = "timecode-meta, fps-n=(uint)25, fps-d=(uint)1, flags=(uint)0, hours=(uint)25, \
                   minutes=(uint)0, seconds=(uint)0, frames=(uint)0, field-count=(uint)0";
        let mut b = gst::Buffer::with_size(1).expect("buffer");
        assert!(apply_metas(b.get_mut().expect("writable"), bad, None).is_err());
        let bad = bad
            .replace("hours=(uint)25", "hours=(uint)1")
            .replace("fps-d=(uint)1", "fps-d=(uint)0");
        assert!(apply_metas(b.get_mut().expect("writable"), &bad, None).is_err());
    }

    #[test]
    fn unknown_or_repeated_metas_are_refused_and_nothing_is_attached() {
        init();
        let crop = "crop-meta, x=(uint)0, y=(uint)0, width=(uint)2, height=(uint)2";
        let caps = i420_caps(66, 50);
        for s in [
            format!("{crop}; {crop}"),
            format!("{crop}; roi-meta, x=(uint)1"),
            format!("{crop}, extra=(int)1"),
            "crop-meta, x=(int)0, y=(uint)0, width=(uint)2, height=(uint)2".to_owned(),
        ] {
            let mut b = gst::Buffer::with_size(10).expect("buffer");
            assert!(
                apply_metas(b.get_mut().expect("writable"), &s, Some(&caps)).is_err(),
                "{s}"
            );
            assert!(b.meta::<gst_video::VideoCropMeta>().is_none());
        }
    }

    fn test_toc() -> gst::Toc {
        let mut toc = gst::Toc::new(gst::TocScope::Global);
        {
            let t = toc.get_mut().expect("writable");
            let mut tags = gst::TagList::new();
            tags.get_mut()
                .expect("w")
                .add::<gst::tags::Title>(&"Movie", gst::TagMergeMode::Append);
            tags.get_mut().expect("w").set_scope(gst::TagScope::Global);
            t.set_tags(tags);
            let mut edition = gst::TocEntry::new(gst::TocEntryType::Edition, "ed\"1");
            {
                let e = edition.get_mut().expect("w");
                e.set_start_stop_times(0, 10_000_000_000);
                for i in 0..3 {
                    let mut ch = gst::TocEntry::new(gst::TocEntryType::Chapter, &format!("ch{i}"));
                    let c = ch.get_mut().expect("w");
                    c.set_start_stop_times(i * 1000, (i + 1) * 1000);
                    let mut tags = gst::TagList::new();
                    {
                        let tw = tags.get_mut().expect("w");
                        tw.add::<gst::tags::Title>(
                            &format!("Chapter {i}").as_str(),
                            gst::TagMergeMode::Append,
                        );
                        tw.add::<gst::tags::TrackNumber>(&(i as u32), gst::TagMergeMode::Append);
                    }
                    c.set_tags(tags);
                    if i == 1 {
                        c.set_loop(gst::TocLoopType::Forward, 2);
                        let sub = gst::TocEntry::new(gst::TocEntryType::Chapter, "ch1.sub");
                        c.append_sub_entry(sub);
                    }
                    e.append_sub_entry(ch);
                }
            }
            t.append_entry(edition);
            t.append_entry(gst::TocEntry::new(gst::TocEntryType::Edition, "ed2"));
        }
        toc
    }

    #[test]
    fn toc_event_round_trips_its_whole_tree() {
        init();
        let ev = gst::event::Toc::new(&test_toc(), true);
        let s = downstream_event_to_string(&ev).expect("carried");
        let back = downstream_event_from_string(&s).expect("rebuilt");
        assert_eq!(back.type_(), gst::EventType::Toc);
        assert!(back.is_sticky());
        assert_eq!(
            downstream_event_to_string(&back).as_deref(),
            Some(s.as_str())
        );
        let gst::EventView::Toc(t) = back.view() else {
            panic!("not a toc");
        };
        let (toc, updated) = t.toc();
        assert!(updated);
        assert_eq!(toc.scope(), gst::TocScope::Global);
        assert_eq!(toc.tags().expect("tags").scope(), gst::TagScope::Global);
        let entries = toc.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].uid(), "ed\"1");
        let chapters = entries[0].sub_entries();
        assert_eq!(chapters.len(), 3);
        assert_eq!(chapters[1].start_stop_times(), Some((1000, 2000)));
        assert_eq!(chapters[1].loop_(), Some((gst::TocLoopType::Forward, 2)));
        assert_eq!(chapters[1].sub_entries()[0].uid(), "ch1.sub");
        let tags = chapters[2].tags().expect("tags");
        assert_eq!(
            tags.get::<gst::tags::Title>().expect("title").get(),
            "Chapter 2"
        );
        assert_eq!(tags.get::<gst::tags::TrackNumber>().expect("n").get(), 2);
    }

    #[test]
    fn toc_trees_with_bad_parents_or_too_deep_are_refused() {
        init();
        let entry = |parent: i32, uid: &str| {
            format!("[entry, parent=(int){parent}, type=(int)3, uid=(string)\"{uid}\"]")
        };
        let toc = |entries: &[String]| {
            format!(
                "toc, sticky=(boolean)true, updated=(boolean)false, scope=(int)1, entries=(structure)< {} >",
                entries.join(", ")
            )
        };
        assert!(downstream_event_from_string(&toc(&[entry(-1, "a"), entry(0, "b")])).is_ok());
        for bad in [
            toc(&[entry(1, "a"), entry(-1, "b")]),
            toc(&[entry(0, "a")]),
            toc(&[entry(-2, "a")]),
            toc(&[entry(-1, "a")]).replace("type=(int)3", "type=(int)9"),
            toc(&[entry(-1, "a")]).replace("sticky=(boolean)true", "sticky=(boolean)false"),
            toc(&[entry(-1, "a")]).replace("scope=(int)1", "scope=(int)0"),
        ] {
            assert!(downstream_event_from_string(&bad).is_err(), "{bad}");
        }
        // A chain of MAX_TOC_DEPTH levels passes, one more does not.
        let chain = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| entry(i as i32 - 1, &format!("e{i}")))
                .collect()
        };
        assert!(downstream_event_from_string(&toc(&chain(MAX_TOC_DEPTH))).is_ok());
        let err = downstream_event_from_string(&toc(&chain(MAX_TOC_DEPTH + 1))).expect_err("deep");
        assert!(err.to_string().contains("levels"), "{err}");
    }

    fn custom_structure() -> gst::Structure {
        gst::Structure::builder("my-event")
            .field("n", 42i32)
            .field("what", "hello, \"world\"")
            .field("times", gst::Array::new([1u64, 2, 3]))
            .build()
    }

    #[test]
    fn custom_downstream_events_round_trip_with_their_type_and_sticky_flag() {
        init();
        for ev in [
            gst::event::CustomDownstream::new(custom_structure()),
            gst::event::CustomDownstreamSticky::new(custom_structure()),
            gst::event::CustomBoth::new(custom_structure()),
        ] {
            let s = downstream_event_to_string(&ev).expect("carried");
            let back = downstream_event_from_string(&s).expect("rebuilt");
            assert_eq!(back.type_(), ev.type_(), "{s}");
            assert_eq!(back.is_sticky(), ev.is_sticky());
            assert_eq!(back.structure(), ev.structure());
            // The type cannot be swapped under a wrong sticky flag.
            let swapped = s.replacen("custom-downstream-sticky", "custom-downstream", 1);
            if swapped != s {
                assert!(downstream_event_from_string(&swapped).is_err());
            }
        }
    }

    #[test]
    fn other_serialized_downstream_events_round_trip() {
        init();
        let group = gst::GroupId::next();
        let mut protection_data = gst::Buffer::from_slice([0u8, 1, 2, 0xfe, 0xff]);
        protection_data
            .get_mut()
            .expect("w")
            .set_pts(gst::ClockTime::NONE);
        let evs = [
            gst::event::StreamGroupDone::new(group),
            gst::event::InstantRateChange::new(
                0.1 + 0.2,
                gst::SegmentFlags::SKIP | gst::SegmentFlags::TRICKMODE,
            ),
            gst::event::SegmentDone::new(gst::ClockTime::from_nseconds(123_456)),
            gst::event::SegmentDone::new(gst::format::Bytes::from_u64(99)),
            gst::event::SegmentDone::new(gst::GenericFormattedValue::new(gst::Format::Time, -1)),
            gst::event::Protection::builder(
                "69f908af-4816-46ea-910c-cd5dcccb0a3a",
                &protection_data,
            )
            .origin("dash/mpd")
            .build(),
            gst::event::Protection::new("sys", &protection_data),
        ];
        for ev in evs {
            let s = downstream_event_to_string(&ev).expect("carried");
            let back = downstream_event_from_string(&s).expect("rebuilt");
            assert_eq!(back.type_(), ev.type_(), "{s}");
            assert_eq!(back.is_sticky(), ev.is_sticky());
            match (ev.view(), back.view()) {
                (gst::EventView::StreamGroupDone(a), gst::EventView::StreamGroupDone(b)) => {
                    assert_eq!(a.group_id(), b.group_id())
                }
                (gst::EventView::InstantRateChange(a), gst::EventView::InstantRateChange(b)) => {
                    assert_eq!(a.get(), b.get())
                }
                (gst::EventView::SegmentDone(a), gst::EventView::SegmentDone(b)) => {
                    assert_eq!(a.get(), b.get())
                }
                (gst::EventView::Protection(a), gst::EventView::Protection(b)) => {
                    let (ai, ad, ao) = a.get();
                    let (bi, bd, bo) = b.get();
                    assert_eq!((ai, ao), (bi, bo));
                    assert_eq!(
                        *ad.map_readable().expect("map"),
                        *bd.map_readable().expect("map")
                    );
                }
                _ => panic!("{s}"),
            }
        }
        for bad in [
            "stream-group-done, sticky=(boolean)true, group-id=(uint)0",
            "instant-rate-change, sticky=(boolean)true, rate=(double)0.0, flags=(uint)0",
            "segment-done, sticky=(boolean)false, format=(int)0, position=(int64)1",
            "segment-done, sticky=(boolean)false, format=(int)5, position=(int64)1000001",
            "segment-done, sticky=(boolean)false, format=(int)3, position=(int64)-2",
            "protection, sticky=(boolean)true, system-id=(string)x, data=(string)abc",
            "protection, sticky=(boolean)true, system-id=(string)x, data=(string)zz",
            "protection, sticky=(boolean)true, system-id=(string)x, data=(string)00, origin=(string)\"a b\"",
            "eos, sticky=(boolean)true",
        ] {
            assert!(downstream_event_from_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn natively_carried_and_out_of_band_events_are_not_turned_into_strings() {
        init();
        for ev in [
            gst::event::Eos::new(),
            gst::event::Caps::new(&i420_caps(2, 2)),
            gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()),
            gst::event::StreamStart::new("s"),
            gst::event::FlushStart::new(),
            gst::event::CustomDownstreamOob::new(custom_structure()),
            gst::event::CustomBothOob::new(custom_structure()),
        ] {
            assert_eq!(downstream_event_to_string(&ev), None, "{:?}", ev.type_());
        }
        assert_eq!(
            upstream_event_to_string(&gst::event::Seek::new(
                1.0,
                gst::SeekFlags::FLUSH,
                gst::SeekType::Set,
                gst::ClockTime::ZERO,
                gst::SeekType::None,
                gst::ClockTime::NONE,
            )),
            None
        );
    }

    fn navigation_structure() -> gst::Structure {
        let mut s = gst::Structure::builder(NAVIGATION)
            .field("event", "mouse-button-press")
            .field("button", 1i32)
            .field("pointer_x", 12.5f64)
            .field("pointer_y", 1.0f64 / 3.0)
            .build();
        let state =
            flags_value(gst_video::NavigationModifierType::static_type(), 1 | 4).expect("flags");
        // SAFETY: a flags value holds a plain integer.
        s.set_value("state", unsafe {
            <glib::SendValue as glib::translate::UnsafeFrom<_>>::unsafe_from(state.into_raw())
        });
        s
    }

    #[test]
    fn upstream_events_round_trip() {
        init();
        let evs = [
            gst_video::UpstreamForceKeyUnitEvent::builder()
                .running_time(gst::ClockTime::from_mseconds(1234))
                .all_headers(true)
                .count(3)
                .build(),
            gst_video::UpstreamForceKeyUnitEvent::builder().build(),
            gst::event::Navigation::new(navigation_structure()),
            gst::event::Qos::new(
                gst::QOSType::Underflow,
                1.25,
                -5_000,
                gst::ClockTime::from_mseconds(100),
            ),
            gst::event::Qos::new(
                gst::QOSType::Throttle,
                0.5,
                40_000_000,
                gst::ClockTime::NONE,
            ),
            gst::event::Reconfigure::new(),
            gst::event::CustomUpstream::new(custom_structure()),
            gst::event::CustomBoth::new(custom_structure()),
        ];
        for ev in evs {
            let s = upstream_event_to_string(&ev).expect("carried");
            let back = upstream_event_from_string(&s).expect("rebuilt");
            assert_eq!(back.type_(), ev.type_(), "{s}");
            assert_eq!(back.structure(), ev.structure(), "{s}");
        }
        let fku = upstream_event_from_string(
            "force-key-unit, running-time=(uint64)5, all-headers=(boolean)true, count=(uint)7",
        )
        .expect("fku");
        assert_eq!(
            gst_video::UpstreamForceKeyUnitEvent::parse(&fku).expect("parses"),
            gst_video::UpstreamForceKeyUnitEvent {
                running_time: Some(gst::ClockTime::from_nseconds(5)),
                all_headers: true,
                count: 7
            }
        );
        for bad in [
            "qos, type=(int)1, proportion=(double)1.0, diff=(int64)-101, timestamp=(uint64)100",
            "qos, type=(int)3, proportion=(double)1.0, diff=(int64)0, timestamp=(uint64)0",
            "qos, type=(int)1, proportion=(double)-1.0, diff=(int64)0, timestamp=(uint64)0",
            "navigation, structure=(structure)[not-navigation, a=(int)1]",
            "reconfigure, x=(int)1",
            "seek, rate=(double)1.0",
        ] {
            assert!(upstream_event_from_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn navigation_events_must_be_well_formed() {
        init();
        let touch = gst::Structure::builder(NAVIGATION)
            .field("event", "touch-down")
            .field("identifier", 3u32)
            .field("pointer_x", 1.0f64)
            .field("pointer_y", 2.0f64)
            .field("pressure", f64::NAN)
            .build();
        let s = upstream_event_to_string(&gst::event::Navigation::new(touch)).expect("carried");
        let back = upstream_event_from_string(&s).expect("rebuilt");
        let st = back.structure().expect("structure");
        assert!(st.get::<f64>("pressure").expect("pressure").is_nan());
        assert_eq!(st.get::<u32>("identifier").expect("id"), 3);
        let nav = |fields: &str| {
            format!("navigation, structure=(structure)[application/x-gst-navigation, {fields}]")
        };
        for bad in [
            nav("event=(string)mouse-move, pointer_x=(double)1.0"),
            nav("event=(string)mouse-move, pointer_x=(double)NaN, pointer_y=(double)1.0"),
            nav("event=(string)mouse-move, pointer_x=(double)inf, pointer_y=(double)1.0"),
            nav("event=(string)mouse-move, pointer_x=(int)1, pointer_y=(double)1.0"),
            nav("event=(string)mouse-button-press, pointer_x=(double)1.0, pointer_y=(double)1.0"),
            nav("event=(string)key-press"),
            nav("event=(string)command, command-code=(int)1"),
            nav("event=(string)touch-down, identifier=(uint)1, pointer_x=(double)1.0, pointer_y=(double)1.0"),
            nav("event=(string)no-such-event"),
            nav("pointer_x=(double)1.0"),
            nav("event=(string)touch-frame, state=(int)1"),
            "navigation, structure=(structure)[not-navigation, event=(string)touch-frame]".to_owned(),
        ] {
            assert!(upstream_event_from_string(&bad).is_err(), "{bad}");
        }
        assert!(upstream_event_from_string(&nav("event=(string)touch-frame")).is_ok());
        // The sending side does not send what the receiving side refuses.
        let broken = gst::Structure::builder(NAVIGATION)
            .field("event", "mouse-move")
            .build();
        assert_eq!(
            upstream_event_to_string(&gst::event::Navigation::new(broken)),
            None
        );
    }

    #[test]
    fn qos_aggregate_forwards_the_slowest_consumer_of_the_last_second() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut q = QosAggregate::new();
        // One consumer: every report goes through.
        assert!(q.offer(1, 0.8, ms(0)));
        assert!(q.offer(1, 1.5, ms(10)));
        // A second, faster consumer is swallowed while 1 is slower...
        assert!(!q.offer(2, 1.0, ms(20)));
        // ...a slower report from it goes through...
        assert!(q.offer(2, 2.0, ms(30)));
        // ...and then 1's (now faster) reports are swallowed.
        assert!(!q.offer(1, 1.2, ms(40)));
        // Once 2 has been silent for over a second, 1 goes through again.
        assert!(!q.offer(1, 1.2, ms(1030)));
        assert!(q.offer(1, 1.2, ms(1031)));
        // A consumer that goes away stops counting at once.
        assert!(q.offer(2, 3.0, ms(1100)));
        assert!(!q.offer(1, 1.0, ms(1110)));
        q.forget(2);
        assert!(q.offer(1, 1.0, ms(1120)));
        // Nonsense is never forwarded.
        assert!(!q.offer(3, f64::NAN, ms(1130)));
        assert!(!q.offer(3, -1.0, ms(1130)));
        // Events.
        init();
        let ev = gst::event::Qos::new(gst::QOSType::Underflow, 9.0, 0, gst::ClockTime::ZERO);
        assert!(q.offer_event(4, &ev, ms(1140)));
        assert!(!q.offer_event(4, &gst::event::Reconfigure::new(), ms(1140)));
    }

    /// Strings of every kind this module produces.
    fn seeds() -> Vec<String> {
        let mut v = Vec::new();
        let mut src = vp9_like_buffer();
        {
            let b = src.get_mut().expect("writable");
            gst_video::VideoCropMeta::add(b, (2, 4, 60, 40));
            gst::ReferenceTimestampMeta::add(
                b,
                &gst::Caps::builder("timestamp/x-ntp")
                    .field("host", "h")
                    .build(),
                gst::ClockTime::from_nseconds(1),
                None,
            );
            let tc = gst_video::VideoTimeCode::new(
                gst::Fraction::new(25, 1),
                None,
                gst_video::VideoTimeCodeFlags::empty(),
                1,
                2,
                3,
                4,
                0,
            );
            gst_video::VideoTimeCodeMeta::add(
                b,
                &gst_video::ValidVideoTimeCode::try_from(tc).expect("valid"),
            );
        }
        v.push(metas_to_string(&src).expect("metas"));
        let mut a = gst::Buffer::with_size(1024).expect("buffer");
        gst_audio::AudioMeta::add(
            a.get_mut().expect("w"),
            &planar_f32_info(48000),
            64,
            &[0, 512],
        )
        .expect("meta");
        v.push(metas_to_string(&a).expect("metas"));
        v.push(downstream_event_to_string(&gst::event::Toc::new(&test_toc(), false)).expect("toc"));
        v.push(
            downstream_event_to_string(
                &gst::event::CustomDownstreamSticky::new(custom_structure()),
            )
            .expect("c"),
        );
        v.push(
            downstream_event_to_string(&gst::event::InstantRateChange::new(
                2.0,
                gst::SegmentFlags::empty(),
            ))
            .expect("i"),
        );
        v.push(
            downstream_event_to_string(&gst::event::SegmentDone::new(gst::ClockTime::ZERO))
                .expect("s"),
        );
        v.push(
            downstream_event_to_string(&gst::event::StreamGroupDone::new(gst::GroupId::next()))
                .expect("g"),
        );
        v.push(
            downstream_event_to_string(&gst::event::Protection::new(
                "x",
                &gst::Buffer::from_slice([1u8, 2]),
            ))
            .expect("p"),
        );
        v.push(
            upstream_event_to_string(&gst::event::Navigation::new(navigation_structure()))
                .expect("n"),
        );
        v.push(
            upstream_event_to_string(&gst::event::Qos::new(
                gst::QOSType::Overflow,
                1.5,
                3,
                gst::ClockTime::ZERO,
            ))
            .expect("q"),
        );
        v.push(
            upstream_event_to_string(
                &gst_video::UpstreamForceKeyUnitEvent::builder()
                    .count(1)
                    .build(),
            )
            .expect("f"),
        );
        v.push(upstream_event_to_string(&gst::event::Reconfigure::new()).expect("r"));
        for caps in caps_cases() {
            v.push(caps_to_string(&caps).expect("caps"));
            v.push(caps.to_string());
        }
        let mut tags = gst::TagList::new();
        tags.get_mut()
            .expect("w")
            .add::<gst::tags::Title>(&"t", gst::TagMergeMode::Append);
        v.push(tags.to_string());
        v
    }

    /// Feeds `s` to every parser of peer strings in this module.
    /// Returns how many of them accepted it.
    fn feed(s: &str, video: &gst::Caps, audio: &gst::Caps) -> usize {
        let mut accepted = 0;
        for caps in [None, Some(video), Some(audio)] {
            let mut b = gst::Buffer::with_size(VP9_SIZE).expect("buffer");
            if apply_metas(b.get_mut().expect("writable"), s, caps.map(|c| c.as_ref())).is_ok() {
                accepted += 1;
                // What was attached serialises again.
                let _ = metas_to_string(&b);
            }
        }
        if let Ok(ev) = downstream_event_from_string(s) {
            accepted += 1;
            let _ = downstream_event_to_string(&ev);
        }
        if let Ok(ev) = upstream_event_from_string(s) {
            accepted += 1;
            let _ = upstream_event_to_string(&ev);
        }
        if let Ok(caps) = caps_from_string(s) {
            accepted += 1;
            let _ = caps_to_string(&caps);
            let _ = caps.to_string();
        }
        if let Ok(tags) = tags_from_string(s) {
            accepted += 1;
            let _ = tags_to_string(&tags);
        }
        let _ = crate::clock::parse_peer_tags(s);
        accepted
    }

    /// Mutations of every kind of string and random bytes: no panic, no
    /// critical (fatal here, see [`init`]).
    #[test]
    fn mutated_and_random_peer_strings_never_panic_or_critical() {
        init();
        let video = i420_caps(66, 50);
        let audio = planar_f32_info(48000).to_caps().expect("caps");
        let mut inputs: Vec<Vec<u8>> = seeds().into_iter().map(String::into_bytes).collect();
        inputs.push(Vec::new());
        for s in &inputs {
            feed(std::str::from_utf8(s).expect("utf8"), &video, &audio);
        }
        let mut rng = shmring::fuzzing::Rng(0x5e71_a112_e000_0001);
        let mut fed = 0;
        let mut accepted = 0;
        for i in 0..20_000 {
            let mut m = if i % 10 == 9 {
                // Random bytes.
                let n = rng.below(200);
                (0..n).map(|_| rng.next_u64() as u8).collect()
            } else {
                inputs[i % inputs.len()].clone()
            };
            shmring::fuzzing::mutate(&mut rng, &mut m);
            // The frame stream hands over only valid UTF-8; keep what we can.
            let s = String::from_utf8_lossy(&m);
            accepted += feed(&s, &video, &audio);
            fed += 1;
        }
        assert_eq!(fed, 20_000);
        // Many mutations still parse, so the building paths run too.
        assert!(accepted > 1_000, "only {accepted} accepted");
        eprintln!("{fed} mutated strings, {accepted} acceptances");
    }
}
