//! GValues and structures to and from the text form: which GLib and
//! GStreamer types are carried, and building them again on the receiving
//! side only after checking what their constructors assert.

use glib::translate::IntoGlib as _;
use gst::glib;
use gst::prelude::*;

use super::text::{valid_name, Item, Val};
use super::{invalid, SerdeError, MAX_DEPTH, MAX_ITEMS, MAX_STRING};

/// Whether `t` is a subtype of `GstFlagSet` (not `GstFlagSet` itself).
pub(super) fn is_flagset(t: glib::Type) -> bool {
    glib::Type::from_name("GstFlagSet").is_some_and(|f| t != f && t.is_a(f))
}

/// A valid date.
pub(super) fn date_of(y: u16, m: u8, d: u8) -> Option<glib::Date> {
    use glib::DateMonth::*;
    let month = [
        January, February, March, April, May, June, July, August, September, October, November,
        December,
    ]
    .get(usize::from(m).checked_sub(1)?)
    .copied()?;
    glib::Date::from_dmy(d, month, y).ok()
}

/// A value of the flags type `t` holding exactly the bits `v`, if `t`
/// defines them all.
pub(super) fn flags_value(t: glib::Type, v: u32) -> Option<glib::Value> {
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

/// `value` as a `SendValue` if it is of an enum, flags or flag set type
/// (plain integers, which any thread may use); `None` for any other type.
pub(super) fn plain_send_value(value: glib::Value) -> Option<glib::SendValue> {
    let t = value.type_();
    if !(t.is_a(glib::Type::ENUM) || t.is_a(glib::Type::FLAGS) || is_flagset(t)) {
        return None;
    }
    // SAFETY: an enum or flags GValue holds a plain integer, a flag set
    // value two (checked above): any thread may use them.
    Some(unsafe {
        <glib::SendValue as glib::translate::UnsafeFrom<_>>::unsafe_from(value.into_raw())
    })
}

/// A scalar GValue in the text form (`None`: a type that is not carried).
pub(super) fn scalar_from_gvalue(v: &glib::Value, depth: usize) -> Option<Val> {
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
    } else {
        return boxed_from_gvalue(v, depth);
    })
}

/// A scalar GValue of a boxed or registered type in the text form (`None`:
/// a type that is not carried).
fn boxed_from_gvalue(v: &glib::Value, depth: usize) -> Option<Val> {
    let t = v.type_();
    Some(if t == gst::Buffer::static_type() {
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
    } else if t == gst::Structure::static_type() {
        let s: gst::Structure = v.get().ok()?;
        Val::Struct(Box::new(item_from_structure(&s, depth + 1)?))
    } else {
        return registered_from_gvalue(v);
    })
}

/// A GValue of a registered flag set, enum or flags type in the text form.
fn registered_from_gvalue(v: &glib::Value) -> Option<Val> {
    let t = v.type_();
    Some(if is_flagset(t) {
        // SAFETY: `v` holds a value of a GstFlagSet subtype (checked above).
        let (f, m) = unsafe {
            let p = glib::translate::ToGlibPtr::to_glib_none(v).0;
            (
                gst::ffi::gst_value_get_flagset_flags(p),
                gst::ffi::gst_value_get_flagset_mask(p),
            )
        };
        Val::FlagSet(t.name().to_owned(), f, m)
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
pub(super) fn val_from_gvalue(v: &glib::Value, depth: usize) -> Option<Val> {
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
pub(super) fn item_from_structure(s: &gst::StructureRef, depth: usize) -> Option<Item> {
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
pub(super) fn scalar_to_gvalue(v: &Val, depth: usize) -> Result<glib::SendValue, SerdeError> {
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
        Val::Buffer(b) => gst::Buffer::from_mut_slice(b.clone()).to_send_value(),
        Val::Date(y, m, d) => date_of(*y, *m, *d)
            .ok_or_else(|| invalid(format!("invalid date {y}-{m}-{d}")))?
            .to_send_value(),
        Val::Enum(..) | Val::Flags(..) | Val::FlagSet(..) => registered_to_gvalue(v)?,
        Val::Array(_) | Val::List(_) => return Err(invalid("nested arrays are not supported")),
    })
}

/// An enum, flags or flag set value of the text form as a GValue of its
/// registered type.
fn registered_to_gvalue(v: &Val) -> Result<glib::SendValue, SerdeError> {
    let value = match v {
        Val::Enum(t, x) => glib::Type::from_name(t)
            .filter(|t| t.is_a(glib::Type::ENUM))
            .and_then(glib::EnumClass::with_type)
            .and_then(|c| c.to_value(*x))
            .ok_or_else(|| invalid(format!("{x} is not a value of {t}")))?,
        Val::Flags(t, x) => glib::Type::from_name(t)
            .filter(|t| t.is_a(glib::Type::FLAGS))
            .and_then(|t| flags_value(t, *x))
            .ok_or_else(|| invalid(format!("{x} is not a set of {t} flags")))?,
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
            value
        }
        _ => {
            return Err(invalid(format!(
                "{} is not a registered type",
                v.type_name()
            )))
        }
    };
    plain_send_value(value).ok_or_else(|| invalid(format!("{} is not plain data", v.type_name())))
}

/// Values of the text form as GValues, each a scalar.
fn scalars_to_gvalues(vs: &[Val], depth: usize) -> Result<Vec<glib::SendValue>, SerdeError> {
    vs.iter().map(|e| scalar_to_gvalue(e, depth)).collect()
}

/// A value of the text form (scalar, array or list) as a GValue.
pub(super) fn val_to_gvalue(v: &Val, depth: usize) -> Result<glib::SendValue, SerdeError> {
    match v {
        Val::Array(vs) => {
            Ok(gst::Array::from_values(scalars_to_gvalues(vs, depth)?).to_send_value())
        }
        Val::List(vs) => Ok(gst::List::from_values(scalars_to_gvalues(vs, depth)?).to_send_value()),
        _ => scalar_to_gvalue(v, depth),
    }
}

/// Builds a structure from the text form (names were validated by the parser
/// and are checked again, so no GStreamer assertion can fire).
pub(super) fn item_to_structure(it: &Item, depth: usize) -> Result<gst::Structure, SerdeError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::downstream::downstream_event_to_string;
    use crate::serialize::parser::parse_one;
    use crate::serialize::test_support::*;
    use crate::serialize::text::print_items;

    #[test]
    fn every_carried_value_type_round_trips_through_the_text_form() {
        init();
        let nested = gst::Structure::builder("inner")
            .field(
                "deep",
                gst::Structure::builder("deeper").field("x", 1i32).build(),
            )
            .build();
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
        s.set_value("flags", modifier_flags(5));
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
}
