//! TOC events: a TOC's tree written as a flat, pre-order list of entries
//! naming their parent's index, and rebuilt (within [`MAX_TOC_ENTRIES`]
//! entries and [`MAX_TOC_DEPTH`] levels) from the peer's list.

use glib::translate::IntoGlib as _;
use gst::glib;

use super::tags::{tags_of, with_tags};
use super::text::{Item, Val};
use super::{invalid, SerdeError, MAX_TOC_DEPTH, MAX_TOC_ENTRIES};

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
        it = with_tags(it, &tags);
    }
    let me = i32::try_from(out.len()).ok()?;
    out.push(Val::Struct(Box::new(it)));
    for sub in e.sub_entries() {
        flatten_toc_entry(&sub, me, depth + 1, out)?;
    }
    Some(())
}

/// A TOC event's TOC and updated flag as an item.
pub(super) fn toc_item(toc: &gst::TocRef, updated: bool) -> Option<Item> {
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
        it = with_tags(it, &tags);
    }
    Some(it)
}

/// One checked TOC entry, before the tree is built.
struct FlatEntry {
    /// Taken when the tree is built (each entry once: a sub-entry must be
    /// writable, i.e. referenced only once, to be appended).
    entry: Option<gst::TocEntry>,
    children: Vec<usize>,
    /// Its level (1: a top-level entry).
    depth: usize,
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

/// Rebuilds a TOC event from a `toc` item.
pub(super) fn toc_from_item(it: &Item) -> Result<gst::Event, SerdeError> {
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
    let mut roots = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let Val::Struct(e) = v else {
            return Err(invalid("toc: an entry is not a structure"));
        };
        let depth = attach_to_parent(e, i, &mut flat, &mut roots)?;
        flat.push(FlatEntry {
            entry: Some(toc_entry_from_item(e)?),
            children: Vec::new(),
            depth,
        });
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

/// Checks entry `e` (the `i`th) and its `parent` (an entry before it, or
/// -1), records it as a child of its parent (or a root); its depth.
fn attach_to_parent(
    e: &Item,
    i: usize,
    flat: &mut [FlatEntry],
    roots: &mut Vec<usize>,
) -> Result<usize, SerdeError> {
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
        flat[p].depth + 1
    };
    if d > MAX_TOC_DEPTH {
        return Err(invalid(format!("toc: deeper than {MAX_TOC_DEPTH} levels")));
    }
    Ok(d)
}

/// A TOC entry (without its sub-entries) from an `entry` item.
fn toc_entry_from_item(e: &Item) -> Result<gst::TocEntry, SerdeError> {
    let ty = e.i32("type")?;
    let ty = toc_entry_type_from_int(ty).ok_or_else(|| invalid(format!("toc: entry type {ty}")))?;
    let mut entry = gst::TocEntry::new(ty, e.str("uid")?);
    let em = entry.make_mut();
    if e.both_or_neither("start", "stop", "toc: start without stop or the reverse")? {
        em.set_start_stop_times(e.i64("start")?, e.i64("stop")?);
    }
    if e.both_or_neither("loop", "repeat", "toc: loop without repeat or the reverse")? {
        let l = e.i32("loop")?;
        let l = toc_loop_from_int(l).ok_or_else(|| invalid(format!("toc: loop type {l}")))?;
        em.set_loop(l, e.i32("repeat")?);
    }
    if let Some(tags) = tags_of(e)? {
        em.set_tags(tags);
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::downstream::{downstream_event_from_string, downstream_event_to_string};
    use crate::serialize::test_support::*;

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
}
