//! The text form every string is made of: values ([`Val`]), named
//! structures ([`Item`]) with checked getters for the receiving side, and
//! the printer the sending side writes them with (see the format in the
//! parent module's docs).

use std::fmt::Write as _;

use super::{invalid, SerdeError, MAX_STRING};

/// One value of the text form.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
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
    pub(super) fn type_name(&self) -> &str {
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
pub(super) struct Item {
    pub(super) name: String,
    /// Caps features written after the name (`video/x-raw(memory:X)`):
    /// only caps have them.
    pub(super) features: Option<Vec<String>>,
    pub(super) fields: Vec<(String, Val)>,
}

/// A getter of a field of one value type: the value, or an error naming
/// the structure, the field and the type wanted.
macro_rules! typed_getter {
    ($name:ident, $ty:ty, $variant:ident, $want:literal) => {
        pub(super) fn $name(&self, field: &str) -> Result<$ty, SerdeError> {
            match self.req(field)? {
                Val::$variant(v) => Ok(*v),
                _ => Err(self.wrong(field, $want)),
            }
        }
    };
}

impl Item {
    pub(super) fn new(name: &str) -> Self {
        Item {
            name: name.to_owned(),
            features: None,
            fields: Vec::new(),
        }
    }

    pub(super) fn with(mut self, name: &str, v: Val) -> Self {
        self.fields.push((name.to_owned(), v));
        self
    }

    pub(super) fn get(&self, name: &str) -> Option<&Val> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Refuses fields outside `allowed` and duplicated fields.
    pub(super) fn check_fields(&self, allowed: &[&str]) -> Result<(), SerdeError> {
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

    pub(super) fn req(&self, name: &str) -> Result<&Val, SerdeError> {
        self.get(name)
            .ok_or_else(|| invalid(format!("{}: missing field {name:?}", self.name)))
    }

    pub(super) fn wrong(&self, name: &str, want: &str) -> SerdeError {
        invalid(format!("{}: field {name:?} is not {want}", self.name))
    }

    typed_getter!(u32, u32, UInt, "a uint");
    typed_getter!(i32, i32, Int, "an int");
    typed_getter!(u64, u64, UInt64, "a uint64");
    typed_getter!(i64, i64, Int64, "an int64");
    typed_getter!(bool, bool, Bool, "a boolean");
    typed_getter!(f64, f64, Double, "a double");

    pub(super) fn str(&self, name: &str) -> Result<&str, SerdeError> {
        match self.req(name)? {
            Val::Str(v) => Ok(v),
            _ => Err(self.wrong(name, "a string")),
        }
    }

    pub(super) fn item(&self, name: &str) -> Result<&Item, SerdeError> {
        match self.req(name)? {
            Val::Struct(v) => Ok(v),
            _ => Err(self.wrong(name, "a structure")),
        }
    }

    /// An array (or an absent field: empty).
    pub(super) fn array(&self, name: &str) -> Result<&[Val], SerdeError> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Val::Array(v)) => Ok(v),
            Some(_) => Err(self.wrong(name, "an array")),
        }
    }

    /// An array (or an absent field: empty) of values `pick` takes, or an
    /// error naming `want`.
    fn array_of<T>(
        &self,
        name: &str,
        want: &str,
        pick: impl Fn(&Val) -> Option<T>,
    ) -> Result<Vec<T>, SerdeError> {
        self.array(name)?
            .iter()
            .map(|v| pick(v).ok_or_else(|| self.wrong(name, want)))
            .collect()
    }

    /// An array of uint64 (or an absent field: empty).
    pub(super) fn u64_array(&self, name: &str) -> Result<Vec<u64>, SerdeError> {
        self.array_of(name, "an array of uint64", |v| match v {
            Val::UInt64(x) => Some(*x),
            _ => None,
        })
    }

    /// An array of int (or an absent field: empty).
    pub(super) fn i32_array(&self, name: &str) -> Result<Vec<i32>, SerdeError> {
        self.array_of(name, "an array of int", |v| match v {
            Val::Int(x) => Some(*x),
            _ => None,
        })
    }

    /// Whether both fields `a` and `b` are present (`false`: neither);
    /// one without the other is the error `msg`.
    pub(super) fn both_or_neither(&self, a: &str, b: &str, msg: &str) -> Result<bool, SerdeError> {
        match (self.get(a), self.get(b)) {
            (None, None) => Ok(false),
            (Some(_), Some(_)) => Ok(true),
            _ => Err(invalid(msg)),
        }
    }
}

/// `u64::MAX` for "none", as GStreamer writes `GST_CLOCK_TIME_NONE`.
pub(super) fn opt_time(t: Option<gst::ClockTime>) -> Val {
    Val::UInt64(t.map_or(u64::MAX, gst::ClockTime::nseconds))
}

/// The time `u64::MAX` stands for none, as in [`opt_time`].
pub(super) fn time_from(v: u64) -> Option<gst::ClockTime> {
    (v != u64::MAX).then(|| gst::ClockTime::from_nseconds(v))
}

/// Items as a string, `; `-separated.
pub(super) fn print_items(items: &[Item]) -> String {
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
    let _ = match v {
        Val::Int(x) | Val::Enum(_, x) => write!(out, "{x}"),
        Val::UInt(x) | Val::Flags(_, x) => write!(out, "{x}"),
        Val::Int64(x) => write!(out, "{x}"),
        Val::UInt64(x) => write!(out, "{x}"),
        Val::Bool(x) => write!(out, "{x}"),
        Val::Double(x) => write!(out, "{x:?}"),
        Val::Str(s) => {
            print_escaped(out, s);
            Ok(())
        }
        Val::Fraction(n, d) => write!(out, "{n}/{d}"),
        Val::Bitmask(x) => write!(out, "0x{x:016x}"),
        Val::Struct(it) => {
            out.push('[');
            print_item(out, it);
            write!(out, "]")
        }
        Val::Buffer(b) => write!(out, "{}", hex(b)),
        Val::Date(y, m, d) => write!(out, "{y:04}-{m:02}-{d:02}"),
        Val::FlagSet(_, f, m) => write!(out, "{f:x}:{m:x}"),
        Val::Array(vs) => print_values(out, vs, '<', '>'),
        Val::List(vs) => print_values(out, vs, '{', '}'),
    };
}

/// `< a, b >` (or `{ a, b }`): an array's (or list's) values.
fn print_values(out: &mut String, vs: &[Val], open: char, close: char) -> std::fmt::Result {
    out.push(open);
    for (i, e) in vs.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        print_val(out, e);
    }
    out.push(' ');
    out.push(close);
    Ok(())
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
pub(super) fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || b"/-_.:+".contains(&c))
        && s.len() <= 256
}

/// Bytes in lower-case hex.
pub(super) fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Bytes from hex, if `s` is an even number of hex digits.
pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// `s` if the receiving side accepts its length.
pub(super) fn bounded(s: String) -> Option<String> {
    (s.len() <= MAX_STRING).then_some(s)
}
