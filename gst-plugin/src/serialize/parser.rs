//! The parser of the peer's strings: bytes to the text form ([`Item`]s of
//! [`Val`]s) within the limits, every name, number, date, enum and flag
//! value checked as it is read; GStreamer's own abbreviations and untyped
//! values read as GStreamer reads them.

use gst::glib;
use gst::prelude::*;

use super::gvalue::{date_of, flags_value, is_flagset};
use super::text::{unhex, valid_name, Item, Val};
use super::{invalid, SerdeError, MAX_DEPTH, MAX_ITEMS, MAX_STRING};

/// A cursor over a peer's string.
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
pub(super) fn register_types() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = gst_video::NavigationModifierType::static_type();
        let _ = gst_video::VideoMultiviewFlags::static_type();
        // SAFETY: a GType getter without preconditions (GStreamer is
        // initialised: strings are parsed only by its elements and tests).
        let _ = unsafe { gst_video::ffi::gst_video_multiview_flagset_get_type() };
    });
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
            if let Some(v) = self.field_value(depth)? {
                fields.push((fname, v));
            }
        }
        Ok(Item {
            name,
            features,
            fields,
        })
    }

    /// A field's value after `=`: `(type)value`, or untyped; `None` for a
    /// value skipped (of a type a lenient parser does not build).
    fn field_value(&mut self, depth: usize) -> Result<Option<Val>, SerdeError> {
        if !self.eat(b'(') {
            // No type: inferred as GStreamer does (hand-written caps).
            return Ok(Some(match self.peek() {
                Some(b'<') => Val::Array(self.untyped_values(b'>')?),
                Some(b'{') => Val::List(self.untyped_values(b'}')?),
                _ => self.untyped_scalar()?,
            }));
        }
        let ty = canonical_type(self.token(|c| c.is_ascii_alphanumeric() || c == b'_', 128)?);
        self.consume(b')')?;
        self.ws();
        if self.lenient && !known_type(ty) {
            self.skip_value()?;
            return Ok(None);
        }
        Ok(Some(match self.peek() {
            Some(b'<') => Val::Array(self.values(ty, b'>', depth)?),
            Some(b'{') => Val::List(self.values(ty, b'}', depth)?),
            _ => self.scalar(ty, depth)?,
        }))
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

    /// `open v, v, ... close` (the cursor on `open`): at most
    /// [`MAX_ITEMS`] values, each read by `next` (given those before it).
    fn sequence(
        &mut self,
        close: u8,
        mut next: impl FnMut(&mut Self, &[Val]) -> Result<Val, SerdeError>,
    ) -> Result<Vec<Val>, SerdeError> {
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
            let v = next(self, &vs)?;
            vs.push(v);
            self.ws();
            if self.eat(close) {
                return Ok(vs);
            }
            self.consume(b',')?;
        }
    }

    /// An array or list of values of type `ty`.
    fn values(&mut self, ty: &str, close: u8, depth: usize) -> Result<Vec<Val>, SerdeError> {
        self.sequence(close, |p, _| p.scalar(ty, depth))
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
        self.sequence(close, |p, before| {
            let v = p.untyped_scalar()?;
            if before
                .first()
                .is_some_and(|f| f.type_name() != v.type_name())
            {
                return Err(p.err("values of different types in one array or list"));
            }
            Ok(v)
        })
    }

    fn number<T: std::str::FromStr>(&mut self, signed: bool) -> Result<T, SerdeError> {
        let start = self.pos;
        let t = self.token(|c| c.is_ascii_digit() || (signed && c == b'-'), 24)?;
        t.parse::<T>().map_err(|_| {
            self.pos = start;
            self.err(format!("invalid number {t:?}"))
        })
    }

    /// One value of type `ty` (a GStreamer type name or abbreviation).
    fn scalar(&mut self, ty: &str, depth: usize) -> Result<Val, SerdeError> {
        Ok(match canonical_type(ty) {
            "int" => Val::Int(self.number(true)?),
            "uint" => Val::UInt(self.number(false)?),
            "int64" => Val::Int64(self.number(true)?),
            "uint64" => Val::UInt64(self.number(false)?),
            "boolean" => self.boolean()?,
            "double" => self.double()?,
            "string" => Val::Str(self.string()?),
            "fraction" => self.fraction()?,
            "bitmask" => self.bitmask()?,
            "buffer" => self.buffer()?,
            "date" => self.date()?,
            "structure" => {
                self.consume(b'[')?;
                self.ws();
                let it = self.item(depth + 1)?;
                self.ws();
                self.consume(b']')?;
                Val::Struct(Box::new(it))
            }
            other => self.registered(other)?,
        })
    }

    /// Fails at `start` (the value's first byte) with `what`.
    fn err_at(&mut self, start: usize, what: impl Into<String>) -> SerdeError {
        self.pos = start;
        self.err(what)
    }

    fn boolean(&mut self) -> Result<Val, SerdeError> {
        let start = self.pos;
        match self.token(|c| c.is_ascii_alphabetic(), 8)? {
            "true" => Ok(Val::Bool(true)),
            "false" => Ok(Val::Bool(false)),
            t => Err(self.err_at(start, format!("invalid boolean {t:?}"))),
        }
    }

    fn double(&mut self) -> Result<Val, SerdeError> {
        let start = self.pos;
        let t = self.token(|c| c.is_ascii_alphanumeric() || b".+-".contains(&c), 64)?;
        match t.parse::<f64>() {
            Ok(x) => Ok(Val::Double(x)),
            _ => Err(self.err_at(start, format!("invalid double {t:?}"))),
        }
    }

    fn fraction(&mut self) -> Result<Val, SerdeError> {
        let start = self.pos;
        let n: i32 = self.number(true)?;
        self.consume(b'/')?;
        let d: i32 = self.number(true)?;
        if d == 0 || n == i32::MIN || d == i32::MIN {
            return Err(self.err_at(start, "invalid fraction"));
        }
        Ok(Val::Fraction(n, d))
    }

    fn bitmask(&mut self) -> Result<Val, SerdeError> {
        if !(self.eat(b'0') && self.eat(b'x')) {
            return Err(self.err("expected 0x"));
        }
        let t = self.token(|c| c.is_ascii_hexdigit(), 16)?;
        Ok(Val::Bitmask(
            u64::from_str_radix(t, 16).map_err(|_| self.err("invalid bitmask"))?,
        ))
    }

    fn buffer(&mut self) -> Result<Val, SerdeError> {
        let begin = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let t = std::str::from_utf8(&self.s[begin..self.pos]).unwrap_or("");
        Ok(Val::Buffer(
            unhex(t).ok_or_else(|| self.err("odd number of hex digits"))?,
        ))
    }

    fn date(&mut self) -> Result<Val, SerdeError> {
        let start = self.pos;
        let y: u16 = self.number(false)?;
        self.consume(b'-')?;
        let m: u8 = self.number(false)?;
        self.consume(b'-')?;
        let d: u8 = self.number(false)?;
        if date_of(y, m, d).is_none() {
            return Err(self.err_at(start, format!("invalid date {y}-{m}-{d}")));
        }
        Ok(Val::Date(y, m, d))
    }

    /// A value of a registered enum, flag set or flags type `name`.
    fn registered(&mut self, name: &str) -> Result<Val, SerdeError> {
        let start = self.pos;
        let t = glib::Type::from_name(name)
            .ok_or_else(|| self.err(format!("unknown type {name:?}")))?;
        if t.is_a(glib::Type::ENUM) {
            let v: i32 = self.number(true)?;
            let ok = glib::EnumClass::with_type(t).is_some_and(|c| c.value(v).is_some());
            if !ok {
                return Err(self.err_at(start, format!("{v} is not a value of {name}")));
            }
            Ok(Val::Enum(name.to_owned(), v))
        } else if is_flagset(t) {
            self.flagset(name)
        } else if t.is_a(glib::Type::FLAGS) {
            let v: u32 = self.number(false)?;
            if flags_value(t, v).is_none() {
                return Err(self.err_at(start, format!("{v} is not a set of {name} flags")));
            }
            Ok(Val::Flags(name.to_owned(), v))
        } else {
            Err(self.err(format!("unsupported type {name:?}")))
        }
    }

    /// `flags:mask` (hex) of the flag set type `name`, GStreamer's flag
    /// names after them skipped.
    fn flagset(&mut self, name: &str) -> Result<Val, SerdeError> {
        let f = self.token(|c| c.is_ascii_hexdigit(), 8)?;
        self.consume(b':')?;
        let m = self.token(|c| c.is_ascii_hexdigit(), 8)?;
        let (f, m) = match (u32::from_str_radix(f, 16), u32::from_str_radix(m, 16)) {
            (Ok(f), Ok(m)) => (f, m),
            _ => return Err(self.err("invalid flag set")),
        };
        // GStreamer appends the flags' names: informative.
        if self.eat(b':') {
            let _ = self.token(|c| c.is_ascii_alphanumeric() || b"/-_+".contains(&c), 4096);
        }
        Ok(Val::FlagSet(name.to_owned(), f, m))
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
pub(super) fn parse_items(s: &str) -> Result<Vec<Item>, SerdeError> {
    parse_with(s, false)
}

/// Parses a peer's string into items, within the limits; with `lenient`,
/// values of types the parser does not build are skipped.
pub(super) fn parse_with(s: &str, lenient: bool) -> Result<Vec<Item>, SerdeError> {
    if s.len() > MAX_STRING {
        return Err(SerdeError::TooLong(s.len()));
    }
    register_types();
    Parser {
        s: s.as_bytes(),
        pos: 0,
        lenient,
    }
    .items()
}

/// Parses a string that must hold exactly one item.
pub(super) fn parse_one(s: &str) -> Result<Item, SerdeError> {
    let mut items = parse_items(s)?;
    if items.len() != 1 {
        return Err(invalid(format!("expected one item, found {}", items.len())));
    }
    items.pop().ok_or_else(|| invalid("no item"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::downstream::downstream_event_from_string;
    use crate::serialize::gvalue::item_to_structure;
    use crate::serialize::test_support::*;
    use crate::serialize::upstream::upstream_event_from_string;

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
            let (r, _) = apply_new(16, s, None);
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
}
