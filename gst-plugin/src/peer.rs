//! Strings from the peer (caps), parsed without trusting them.

/// Parses caps a sink sent. `None` for anything that is not valid caps,
/// including a string with a NUL byte, which GStreamer's C parser cannot take
/// (glib's conversion panics on it: found by the `peer_strings` fuzz target).
pub(crate) fn parse_caps(s: &str) -> Option<gst::Caps> {
    if s.contains('\0') {
        return None;
    }
    <gst::Caps as std::str::FromStr>::from_str(s).ok()
}
