//! Tag lists: the string form of a tag list (values of types that are not
//! carried left out, only registered tags with the registered type kept),
//! and the `tags` / `tag-scope` fields a TOC and its entries carry.

use super::gvalue::{scalar_from_gvalue, scalar_to_gvalue};
use super::parser::parse_with;
use super::text::{bounded, print_items, valid_name, Item, Val};
use super::{invalid, SerdeError, MAX_DEPTH, MAX_ITEMS};

/// A tag list in the text form: one field per tag, a list when it has
/// several values; values of types that are not carried are left out.
pub(super) fn item_from_tags(tags: &gst::TagListRef) -> Item {
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
/// [`MAX_STRING`](super::MAX_STRING).
pub(crate) fn tags_to_string(tags: &gst::TagListRef) -> Option<String> {
    bounded(print_items(&[item_from_tags(tags)]))
}

/// A tag list from the peer (`taglist, tag=(type)value, ...`, as
/// [`tags_to_string`] or GStreamer writes it), parsed without GStreamer's
/// parser: values of types this module does not build (date-times, samples,
/// ...) are skipped, and only values of registered tags whose type matches
/// the registration are kept.
pub(crate) fn tags_from_string(s: &str) -> Result<gst::TagList, SerdeError> {
    let mut items = parse_with(s, true)?;
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

/// `it` with the fields `tags` and `tag-scope` holding `tags`.
pub(super) fn with_tags(it: Item, tags: &gst::TagListRef) -> Item {
    it.with("tags", Val::Struct(Box::new(item_from_tags(tags))))
        .with("tag-scope", Val::Int(tag_scope_to_int(tags.scope())))
}

/// The tag list of `it`'s fields `tags` and `tag-scope` (see [`with_tags`]),
/// if it has them.
pub(super) fn tags_of(it: &Item) -> Result<Option<gst::TagList>, SerdeError> {
    let msg = format!("{}: tags without a scope or the reverse", it.name);
    if !it.both_or_neither("tags", "tag-scope", &msg)? {
        return Ok(None);
    }
    let scope = tag_scope_from_int(it.i32("tag-scope")?)?;
    Ok(Some(item_to_tags(it.item("tags")?, scope)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::test_support::*;
    use gst::glib;

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
}
