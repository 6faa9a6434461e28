//! The pieces of `cpal_playback`: reading the audio format from a frame
//! stream's caps (peer data: validated), and the output callback body, which
//! only pops from a typed shmring ring (no allocation, no lock, no syscall but
//! the wake-up write when the ring's producer sleeps) and fills what is
//! missing with silence, counting it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use shmring::channel::Consumer;

/// Raw audio the playback example accepts: interleaved `F32LE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    /// Sample rate (Hz), 1..=768000.
    pub rate: u32,
    /// Channels, 1..=64.
    pub channels: u16,
}

/// Parses GStreamer caps such as `audio/x-raw, format=(string)F32LE,
/// layout=(string)interleaved, rate=(int)48000, channels=(int)2`. Anything
/// else (another media type or format, planar layout, missing or absurd
/// fields) is an error that says what is wrong.
pub fn parse_audio_caps(caps: &str) -> Result<AudioFormat, String> {
    let mut parts = caps.split(',').map(str::trim);
    if parts.next() != Some("audio/x-raw") {
        return Err(format!("not raw audio: {caps}"));
    }
    let (mut format, mut layout, mut rate, mut channels) = (None, None, None, None);
    for part in parts {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("malformed caps field {part:?}"));
        };
        // Drop a type annotation: "(string)F32LE" -> "F32LE".
        let value = value.trim();
        let value = match value.strip_prefix('(') {
            Some(rest) => rest.split_once(')').map_or(value, |(_, v)| v),
            None => value,
        };
        match key.trim() {
            "format" => format = Some(value),
            "layout" => layout = Some(value),
            "rate" => rate = value.parse::<u32>().ok(),
            "channels" => channels = value.parse::<u16>().ok(),
            _ => {}
        }
    }
    if format != Some("F32LE") {
        return Err(format!(
            "format {format:?}: only F32LE is played (put `audioconvert ! audio/x-raw,format=F32LE` before shmringsink)"
        ));
    }
    if layout.is_some_and(|l| l != "interleaved") {
        return Err(format!("layout {layout:?}: only interleaved is played"));
    }
    let rate = rate
        .filter(|r| (1..=768_000).contains(r))
        .ok_or(format!("bad or missing rate in {caps}"))?;
    let channels = channels
        .filter(|c| (1..=64).contains(c))
        .ok_or(format!("bad or missing channels in {caps}"))?;
    Ok(AudioFormat { rate, channels })
}

/// Counters the output callback keeps.
#[derive(Debug, Default)]
pub struct PlaybackStats {
    /// Samples (all channels) played from the stream.
    pub played: AtomicU64,
    /// Samples of silence written because the ring was empty.
    pub underrun: AtomicU64,
    /// Set once the stream ended and the ring ran dry.
    pub finished: AtomicBool,
}

/// The output callback body.
pub struct Playback {
    rx: Consumer<f32>,
    stats: Arc<PlaybackStats>,
    ended: Arc<AtomicBool>,
}

impl Playback {
    /// Plays from `rx`; `ended` is set by the reader thread at the stream's
    /// end (EOS or the sink going away).
    pub fn new(rx: Consumer<f32>, stats: Arc<PlaybackStats>, ended: Arc<AtomicBool>) -> Self {
        Self { rx, stats, ended }
    }

    /// Fills `out` (interleaved samples) from the ring, silence for the rest.
    pub fn on_output(&mut self, out: &mut [f32]) {
        let ended = self.ended.load(Ordering::Acquire);
        // An error here means the producer went away: play what is left.
        let n = self.rx.pop_slice(out).unwrap_or(0);
        let (_, rest) = out.split_at_mut(n);
        rest.fill(0.0);
        self.stats.played.fetch_add(n as u64, Ordering::Relaxed);
        if !rest.is_empty() {
            if ended {
                self.stats.finished.store(true, Ordering::Release);
            } else {
                self.stats
                    .underrun
                    .fetch_add(rest.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_from_gstreamer_parse() {
        let caps = "audio/x-raw, format=(string)F32LE, layout=(string)interleaved, rate=(int)48000, channels=(int)2, channel-mask=(bitmask)0x0000000000000003";
        assert_eq!(
            parse_audio_caps(caps),
            Ok(AudioFormat {
                rate: 48_000,
                channels: 2
            })
        );
    }

    #[test]
    fn hostile_or_unsupported_caps_are_errors() {
        for caps in [
            "video/x-raw, format=(string)RGBA",
            "audio/x-raw, format=(string)S16LE, rate=(int)48000, channels=(int)2",
            "audio/x-raw, format=(string)F32LE, layout=(string)non-interleaved, rate=(int)48000, channels=(int)2",
            "audio/x-raw, format=(string)F32LE, rate=(int)0, channels=(int)2",
            "audio/x-raw, format=(string)F32LE, rate=(int)48000, channels=(int)65535",
            "audio/x-raw, format=(string)F32LE, rate=(int)99999999999999, channels=(int)2",
            "audio/x-raw, format=(string)F32LE, rate",
            "",
        ] {
            assert!(parse_audio_caps(caps).is_err(), "{caps}");
        }
    }
}
