//! Producer hooks: probes on the element named `hook` of a producer pipeline
//! that make what no stock element makes deterministically (a reference
//! timestamp meta, a TOC, custom events, a gap, every buffer flag, buffers
//! of many sizes) or report what reaches the producer from downstream
//! (upstream events; with `stats`, the sink's stats at the end). The same hook runs in the unsplit run (in the test
//! process) and in the split run (in a child process: this test binary run
//! as `helper_producer`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gst::prelude::*;

/// Where a hook reports (upstream events it saw): a line each.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// Installs hook `name` on the pipeline's element `hook`.
pub fn install(p: &gst::Pipeline, name: &str, log: Log) {
    let el = p
        .by_name("hook")
        .unwrap_or_else(|| panic!("hook {name}: the producer has no element named hook"));
    let pad = el.static_pad("src").expect("hook element's src pad");
    let n = Arc::new(AtomicU64::new(0));
    match name {
        "refts" => {
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
                    let b = b.make_mut();
                    let pts = b.pts().unwrap_or(gst::ClockTime::ZERO);
                    let reference = gst::Caps::builder("timestamp/x-ntp")
                        .field("host", "shmring.test")
                        .build();
                    gst::ReferenceTimestampMeta::add(
                        b,
                        &reference,
                        pts + gst::ClockTime::from_seconds(3_900_000_000),
                        Some(gst::ClockTime::from_mseconds(1)),
                    );
                    let unix = gst::Caps::builder("timestamp/x-unix").build();
                    gst::ReferenceTimestampMeta::add(
                        b,
                        &unix,
                        pts + gst::ClockTime::from_seconds(1_700_000_000),
                        None,
                    );
                }
                gst::PadProbeReturn::Ok
            });
        }
        "toc" | "custom" | "gap" => {
            let kind = name.to_string();
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                let i = n.fetch_add(1, Ordering::Relaxed);
                let Some(gst::PadProbeData::Buffer(b)) = &info.data else {
                    return gst::PadProbeReturn::Ok;
                };
                let pts = b.pts().unwrap_or(gst::ClockTime::ZERO);
                let dur = b.duration().unwrap_or(gst::ClockTime::from_mseconds(10));
                match (kind.as_str(), i) {
                    ("toc", 0) | ("toc", 4) => {
                        let _ = pad.push_event(gst::event::Toc::new(&toc(i), i == 4));
                    }
                    ("custom", 0) => {
                        let s = gst::Structure::builder("x-shmring-sticky")
                            .field("value", 1i32)
                            .field("text", "sticky")
                            .build();
                        let _ = pad.push_event(gst::event::CustomDownstreamSticky::new(s));
                    }
                    ("custom", 2) | ("custom", 5) => {
                        let s = gst::Structure::builder("x-shmring-custom")
                            .field("n", i as i32)
                            .field("ratio", gst::Fraction::new(3, 7))
                            .build();
                        let _ = pad.push_event(gst::event::CustomDownstream::new(s));
                    }
                    ("gap", 3) => {
                        // A gap of one buffer's duration before this buffer
                        // (the stream says "nothing here" for that time).
                        let _ = pad.push_event(
                            gst::event::Gap::builder(pts.saturating_sub(dur / 2))
                                .duration(dur / 2)
                                .build(),
                        );
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            });
        }
        "flags" => {
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let i = n.fetch_add(1, Ordering::Relaxed);
                if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
                    let b = b.make_mut();
                    use gst::BufferFlags as F;
                    let all = [
                        F::LIVE,
                        F::DECODE_ONLY,
                        F::DISCONT,
                        F::RESYNC,
                        F::CORRUPTED,
                        F::MARKER,
                        F::HEADER,
                        F::GAP,
                        F::DROPPABLE,
                        F::DELTA_UNIT,
                        F::SYNC_AFTER,
                        F::NON_DROPPABLE,
                    ];
                    // Buffer i gets flag i and flag i+5 (mod 12), DISCONT
                    // only from the third buffer on.
                    let mut f = all[i as usize % all.len()] | all[(i as usize + 5) % all.len()];
                    if i < 2 {
                        f.remove(F::DISCONT);
                    }
                    b.set_flags(f);
                    b.set_offset(1000 + i * 7);
                    b.set_offset_end(1000 + i * 7 + 3);
                    if let Some(pts) = b.pts() {
                        b.set_dts(pts.checked_sub(gst::ClockTime::from_mseconds(1)));
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        "sizes" => {
            // Buffer i becomes SIZES[i] bytes of a pattern that depends on i.
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let i = n.fetch_add(1, Ordering::Relaxed) as usize;
                if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
                    let len = SIZES[i % SIZES.len()];
                    let data: Vec<u8> = (0..len)
                        .map(|k| (k as u64 * 31 + i as u64 * 7 + (k >> 12) as u64) as u8)
                        .collect();
                    let mut nb = gst::Buffer::from_mut_slice(data);
                    {
                        let m = nb.get_mut().expect("new buffer");
                        m.set_pts(gst::ClockTime::from_mseconds(i as u64 * 10));
                        m.set_duration(gst::ClockTime::from_mseconds(10));
                        m.set_offset(i as u64);
                    }
                    *b = nb;
                }
                gst::PadProbeReturn::Ok
            });
        }
        "upstream" => {
            // Each upstream event with the number of buffers that had gone
            // downstream when it came.
            let seen = n.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                seen.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
            pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    log(format!(
                        "UPSTREAM after={} {:?} {}",
                        n.load(Ordering::Relaxed),
                        e.type_(),
                        e.structure().map(|s| s.to_string()).unwrap_or_default()
                    ));
                }
                gst::PadProbeReturn::Ok
            });
        }
        // Nothing on the stream: the helper producer reports the sink's
        // stats at the end (see `helper_producer`).
        "stats" => {}
        other => panic!("unknown hook {other}"),
    }
}

/// Buffer sizes of the `sizes` hook: 1 byte to 24 MiB, up and down.
pub const SIZES: [usize; 12] = [
    1,
    2,
    63,
    4096,
    4097,
    65_537,
    1 << 20,
    3,
    (24 << 20) + 5,
    100,
    (5 << 20) + 1,
    7,
];

fn toc(i: u64) -> gst::Toc {
    let mut toc = gst::Toc::new(gst::TocScope::Global);
    {
        let t = toc.get_mut().expect("new toc");
        let mut edition = gst::TocEntry::new(gst::TocEntryType::Edition, "edition");
        for c in 0..=(i / 4) {
            let mut ch = gst::TocEntry::new(gst::TocEntryType::Chapter, &format!("chapter{c}"));
            let e = ch.get_mut().expect("new entry");
            e.set_start_stop_times(c as i64 * 100_000_000, (c as i64 + 1) * 100_000_000);
            let mut tags = gst::TagList::new();
            tags.get_mut().expect("new tags").add::<gst::tags::Title>(
                &format!("Chapter {c}").as_str(),
                gst::TagMergeMode::Append,
            );
            e.set_tags(tags);
            edition.get_mut().expect("new entry").append_sub_entry(ch);
        }
        t.append_entry(edition);
    }
    toc
}
