//! Strings from the peer (caps), parsed without trusting them.

/// Parses caps a sink sent. `None` for anything that is not valid caps of
/// the types `serialize` carries. GStreamer's own parser is never used on
/// them: it `g_critical`s on invalid structure names, also nested ones
/// (`x, a=(structure)"1x;"`), and on reversed ranges (found by the
/// `peer_strings` fuzz target under `G_DEBUG=fatal-criticals`); glib's
/// string conversion panics on a NUL byte, which the parser refuses too.
pub(crate) fn parse_caps(s: &str) -> Option<gst::Caps> {
    crate::serialize::caps_from_string(s).ok()
}
