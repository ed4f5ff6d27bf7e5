//! Small helpers to write JSON text by hand around pre-encoded payloads, shared by the
//! JSON serializers (1.0.0 and 2.0.0) and used by the NIF to encode BEAM terms. A leaf:
//! it knows JSON, not the channel protocol's types.

/// Appends `value` as a JSON string (quoted and escaped, as Jason does by default:
/// `"`, `\` and control characters are escaped; everything else is copied).
///
/// ```
/// use fenix_core::protocol::json::write_str;
/// // The topic and event slots of `[null,null,"room:lobby","shout",{"msg":"hi all"}]`.
/// let mut out = Vec::new();
/// write_str(&mut out, "room:lobby");
/// assert_eq!(out, br#""room:lobby""#);
/// out.clear();
/// write_str(&mut out, "say \"hi\"\n");
/// assert_eq!(out, br#""say \"hi\"\n""#);
/// ```
pub fn write_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `value` as a JSON string, or `null`.
///
/// ```
/// use fenix_core::protocol::json::write_opt_str;
/// // The join_ref and ref slots of `["3",null,"room:lobby","pushed",{"only":"me"}]`.
/// let mut out = Vec::new();
/// write_opt_str(&mut out, Some("3"));
/// out.push(b',');
/// write_opt_str(&mut out, None);
/// assert_eq!(out, br#""3",null"#);
/// ```
pub fn write_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends the payload of a `phx_reply`: `{"response":<response>,"status":<status>}`,
/// keys in Jason's (sorted) order, as both JSON serializers send it.
pub(super) fn write_reply(out: &mut Vec<u8>, response: &[u8], status: &str) {
    out.extend_from_slice(b"{\"response\":");
    out.extend_from_slice(response);
    out.extend_from_slice(b",\"status\":");
    write_str(out, status);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_serde_json() {
        for s in ["plain", "quote \" slash \\ /", "ctl \u{1} \n \t \r \u{8} \u{c}", "ünï ☃"] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn writes_a_reply_payload_like_phoenix() {
        // from shared/vectors/phoenix_wire_frames.md: a refused join
        let mut out = Vec::new();
        write_reply(&mut out, br#"{"reason":"unauthorized"}"#, "error");
        assert_eq!(out, br#"{"response":{"reason":"unauthorized"},"status":"error"}"#);
    }
}
