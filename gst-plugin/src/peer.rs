//! Strings from the peer (caps), parsed without trusting them.

/// Parses caps a sink sent. `None` for anything that is not valid caps,
/// including a string with a NUL byte, which GStreamer's C parser cannot take
/// (glib's conversion panics on it: found by the `peer_strings` fuzz target).
pub(crate) fn parse_caps(s: &str) -> Option<gst::Caps> {
    check_peer_string(s).ok()?;
    <gst::Caps as std::str::FromStr>::from_str(s).ok()
}

/// Longest caps, tags or event string taken from a peer (caps with stream
/// headers can be large).
pub(crate) const MAX_PEER_STRING: usize = 16 << 20;

/// Checks a GStreamer string from the peer (caps, tags, a structure) before
/// it reaches GStreamer's parser, which prints a `g_critical` (fatal under
/// `G_DEBUG=fatal-criticals`) for some malformed input instead of failing
/// quietly: every top-level structure name must be a valid one (a letter,
/// then letters, digits or `/-_.:+`), caps features simple names, and no
/// value may nest a structure, caps or tag list (whose names the parser
/// would not check either). `Err` says what is wrong.
pub(crate) fn check_peer_string(s: &str) -> Result<(), String> {
    if s.len() > MAX_PEER_STRING {
        return Err(format!("{} bytes", s.len()));
    }
    if s.contains('\0') {
        return Err("NUL byte".into());
    }
    let squashed: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    for nested in [
        "(structure)",
        "(gststructure)",
        "(caps)",
        "(gstcaps)",
        "(gstcapsfeatures)",
        "(taglist)",
        "(gsttaglist)",
        "(gstsegment)",
        "(segment)",
        "(gstdatetime)",
        "(datetime)",
        "(gstsample)",
        "(sample)",
        "(gstbufferlist)",
        "(bufferlist)",
        "(gsttoc)",
    ] {
        if squashed.contains(nested) {
            return Err(format!("nested value {nested}"));
        }
    }
    for part in top_level(s) {
        let part = part.trim_start();
        if part.trim().is_empty() {
            continue;
        }
        let end = part
            .find(|c: char| c == ',' || c == '(' || c == ';' || c.is_whitespace())
            .unwrap_or(part.len());
        let name = &part[..end];
        if !valid_name(name) {
            return Err(format!("structure name {name:?}"));
        }
        if let Some(rest) = part[end..].strip_prefix('(') {
            let close = rest.find(')').ok_or("unclosed caps features")?;
            for f in rest[..close].split(',') {
                let f = f.trim();
                let ok = f == "ANY"
                    || f.split_once(':').is_some_and(|(a, b)| {
                        !a.is_empty()
                            && !b.is_empty()
                            && a.chars().all(|c| c.is_ascii_alphanumeric())
                            && b.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                if !ok {
                    return Err(format!("caps feature {f:?}"));
                }
            }
        }
    }
    Ok(())
}

/// Whether `s` holds one structure (nothing after a closing `;`): what
/// GStreamer's structure and tag-list parsers accept without a warning.
pub(crate) fn is_single_structure(s: &str) -> bool {
    let parts = top_level(s);
    parts.len() == 1 || (parts.len() == 2 && parts[1].is_empty())
}

fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "/-_.:+".contains(ch))
}

/// The `;`-separated parts of `s` outside quotes (a backslash escapes the
/// next character inside quotes).
fn top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_strings_that_would_make_gstreamer_complain_are_refused() {
        assert!(check_peer_string("video/x-raw, format=(string)I420, width=(int)64").is_ok());
        assert!(check_peer_string("video/x-raw(memory:SystemMemory), width=(int)64").is_ok());
        assert!(check_peer_string("taglist, title=(string)\"a;b\"").is_ok());
        assert!(check_peer_string("2video/x-raw").is_err());
        assert!(check_peer_string("video/x-raw; 9").is_err());
        assert!(check_peer_string("a, s=( structure )\"9x\"").is_err());
        assert!(check_peer_string("a(memory:DMA Buf)").is_err());
        assert!(check_peer_string("a\0b").is_err());
    }
}
