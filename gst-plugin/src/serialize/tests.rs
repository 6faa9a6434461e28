//! The test across every parser of peer strings: mutations of each kind of
//! string this module writes, and random bytes, never panic and never make
//! GStreamer `g_critical`.

use super::metas::metas_to_string;
use super::test_support::*;
use super::*;

/// A buffer with every carried video meta: vp9dec's layout, a crop, a
/// reference timestamp and a time code.
fn video_metas_buffer() -> gst::Buffer {
    let mut src = vp9_like_buffer();
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
    src
}

/// Strings of every kind this module produces.
fn seeds() -> Vec<String> {
    let mut audio = gst::Buffer::with_size(1024).expect("buffer");
    gst_audio::AudioMeta::add(
        audio.get_mut().expect("w"),
        &planar_f32_info(48000),
        64,
        &[0, 512],
    )
    .expect("meta");
    let mut v: Vec<String> = [video_metas_buffer(), audio]
        .iter()
        .map(|b| metas_to_string(b).expect("metas"))
        .collect();
    let downstream = [
        gst::event::Toc::new(&test_toc(), false),
        gst::event::CustomDownstreamSticky::new(custom_event_structure()),
        gst::event::InstantRateChange::new(2.0, gst::SegmentFlags::empty()),
        gst::event::SegmentDone::new(gst::ClockTime::ZERO),
        gst::event::StreamGroupDone::new(gst::GroupId::next()),
        gst::event::Protection::new("x", &gst::Buffer::from_slice([1u8, 2])),
    ];
    v.extend(
        downstream
            .iter()
            .map(|e| downstream_event_to_string(e).expect("carried")),
    );
    let upstream = [
        gst::event::Navigation::new(navigation_structure()),
        gst::event::Qos::new(gst::QOSType::Overflow, 1.5, 3, gst::ClockTime::ZERO),
        gst_video::UpstreamForceKeyUnitEvent::builder()
            .count(1)
            .build(),
        gst::event::Reconfigure::new(),
    ];
    v.extend(
        upstream
            .iter()
            .map(|e| upstream_event_to_string(e).expect("carried")),
    );
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
        let (r, b) = apply_new(VP9_SIZE, s, caps);
        if r.is_ok() {
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
