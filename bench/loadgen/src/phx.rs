//! Phoenix channel messages, serializer vsn 2.0.0: `[join_ref, ref, topic, event, payload]`.
//!
//! Parsing is targeted: the four leading fields are scanned by hand (strings without
//! escapes are borrowed, strings with escapes go through serde_json) and the payload is
//! handed back as the raw JSON bytes, to be parsed with serde_json only where needed.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub join_ref: Option<Cow<'a, str>>,
    pub msg_ref: Option<Cow<'a, str>>,
    pub topic: Cow<'a, str>,
    pub event: Cow<'a, str>,
    /// The payload's JSON text, as sent.
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad channel message: {}", self.0)
    }
}

fn err<T>(msg: &str, b: &[u8]) -> Result<T, ParseError> {
    let shown = String::from_utf8_lossy(&b[..b.len().min(120)]);
    Err(ParseError(format!("{msg} in {shown}")))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A JSON string or `null` starting at `i`; returns it and the index after it.
fn opt_str(b: &[u8], i: usize) -> Result<(Option<Cow<'_, str>>, usize), ParseError> {
    if b[i..].starts_with(b"null") {
        return Ok((None, i + 4));
    }
    if b.get(i) != Some(&b'"') {
        return err("expected a string or null", b);
    }
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        match b[j.min(b.len())..].iter().position(|&c| c == b'"' || c == b'\\') {
            None => return err("unterminated string", b),
            Some(p) if b[j + p] == b'"' => {
                j += p;
                break;
            }
            Some(p) => {
                escaped = true;
                j += p + 2;
            }
        }
    }
    let s = if escaped {
        match serde_json::from_slice::<String>(&b[i..=j]) {
            Ok(s) => Cow::Owned(s),
            Err(e) => return err(&format!("bad string ({e})"), b),
        }
    } else {
        match std::str::from_utf8(&b[i + 1..j]) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => return err("string is not UTF-8", b),
        }
    };
    Ok((Some(s), j + 1))
}

/// Parses one text frame of serializer 2.0.0.
pub fn parse(b: &[u8]) -> Result<Frame<'_>, ParseError> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return err("expected a JSON array", b);
    }
    let mut fields: [Option<Cow<'_, str>>; 4] = [None, None, None, None];
    for (n, f) in fields.iter_mut().enumerate() {
        i = skip_ws(b, i + 1);
        if i >= b.len() {
            return err("truncated message", b);
        }
        let (s, next) = opt_str(b, i)?;
        *f = s;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b',') {
            return err(&format!("expected ',' after field {n}"), b);
        }
    }
    let start = skip_ws(b, i + 1);
    let mut end = b.len();
    while end > start && matches!(b[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
        end -= 1;
    }
    if end <= start || b[end - 1] != b']' {
        return err("expected ']' at the end", b);
    }
    end -= 1;
    while end > start && matches!(b[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
        end -= 1;
    }
    if end == start {
        return err("no payload", b);
    }
    let [join_ref, msg_ref, topic, event] = fields;
    let (Some(topic), Some(event)) = (topic, event) else {
        return err("topic and event must be strings", b);
    };
    Ok(Frame { join_ref, msg_ref, topic, event, payload: &b[start..end] })
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn push_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `[join_ref, ref, topic, event, payload]`; `payload` must be JSON text.
pub fn encode(out: &mut Vec<u8>, join_ref: Option<&str>, msg_ref: Option<&str>, topic: &str, event: &str, payload: &[u8]) {
    out.push(b'[');
    push_opt(out, join_ref);
    out.push(b',');
    push_opt(out, msg_ref);
    out.push(b',');
    push_json_str(out, topic);
    out.push(b',');
    push_json_str(out, event);
    out.push(b',');
    out.extend_from_slice(payload);
    out.push(b']');
}

/// The payload of a `phx_reply`.
#[derive(Debug, Deserialize)]
pub struct Reply<'a> {
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    #[serde(default)]
    pub response: serde_json::Value,
}

/// `blasted` broadcast payload `{"i": i, "body": B}` (the body is skipped).
#[derive(Debug, Deserialize)]
pub struct Blasted {
    pub i: u64,
}

/// The integer member `key` of the JSON object `payload` when it is the object's last
/// member (`{..., "key":123}`) or its first (`{"key":123, ...}`): the fast path for
/// `blasted` {"body": B, "i": i}. Anything else gives `None` (then parse with serde_json).
/// Both positions are unambiguous: inside a string a quote is always escaped.
pub fn edge_u64(payload: &[u8], key: &str) -> Option<u64> {
    fn digits(d: &[u8]) -> Option<u64> {
        if d.is_empty() || d.len() > 19 || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(d.iter().fold(0u64, |n, c| n * 10 + (c - b'0') as u64))
    }
    let k = key.as_bytes();
    let inner = payload.strip_prefix(b"{")?.strip_suffix(b"}")?;
    // last member: ,"key":digits}
    let start = inner.iter().rposition(|c| !c.is_ascii_digit()).map_or(0, |p| p + 1);
    let head = &inner[..start];
    if let Some(h) = head.strip_suffix(b"\":").and_then(|h| h.strip_suffix(k)).and_then(|h| h.strip_suffix(b"\"")) {
        if h.is_empty() || h.ends_with(b",") {
            return digits(&inner[start..]);
        }
    }
    // first member: {"key":digits, or {"key":digits}
    let rest = inner.strip_prefix(b"\"")?.strip_prefix(k)?.strip_prefix(b"\":")?;
    let end = rest.iter().position(|c| !c.is_ascii_digit()).unwrap_or(rest.len());
    if end == rest.len() || rest[end] == b',' {
        return digits(&rest[..end]);
    }
    None
}

/// The latency scenario's `shout` payload `{"t": send_ns, "seq": k, ...}`.
#[derive(Debug, Deserialize)]
pub struct Stamp {
    pub t: u64,
    pub seq: u64,
}

/// The echo scenario's reply `{"response": {"k": k, ...}, "status": "ok"}`.
#[derive(Debug, Deserialize)]
pub struct EchoReply<'a> {
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    pub response: EchoBody,
}

#[derive(Debug, Deserialize)]
pub struct EchoBody {
    pub k: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }

    #[test]
    fn parses_wire_vectors() {
        // From shared/vectors/phoenix_wire_frames.md
        let f = parse(br#"["3","3","room:lobby","phx_reply",{"response":{"joined":"room:lobby","user_id":"u1"},"status":"ok"}]"#).unwrap();
        assert_eq!(f.join_ref, Some(b("3")));
        assert_eq!(f.msg_ref, Some(b("3")));
        assert_eq!(f.topic, "room:lobby");
        assert_eq!(f.event, "phx_reply");
        assert_eq!(f.payload, br#"{"response":{"joined":"room:lobby","user_id":"u1"},"status":"ok"}"#);
        let r: Reply = serde_json::from_slice(f.payload).unwrap();
        assert_eq!(r.status, "ok");
        assert_eq!(r.response["joined"], "room:lobby");

        let f = parse(br#"[null,null,"room:lobby","blasted",{"body":"b","i":2}]"#).unwrap();
        assert_eq!((f.join_ref, f.msg_ref), (None, None));
        assert_eq!(f.event, "blasted");
        let bl: Blasted = serde_json::from_slice(f.payload).unwrap();
        assert_eq!(bl.i, 2);

        let f = parse(br#"["3",null,"room:lobby","presence_state",{}]"#).unwrap();
        assert_eq!((f.join_ref, f.msg_ref, f.payload), (Some(b("3")), None, &b"{}"[..]));

        let f = parse(br#"[null,"4","phoenix","phx_reply",{"response":{},"status":"ok"}]"#).unwrap();
        assert_eq!((f.join_ref, f.msg_ref.as_deref(), &*f.topic), (None, Some("4"), "phoenix"));
        let r: Reply = serde_json::from_slice(f.payload).unwrap();
        assert_eq!(r.status, "ok");

        let f = parse(br#"["18","18","room:crashy","phx_error",{}]"#).unwrap();
        assert_eq!(f.event, "phx_error");
    }

    #[test]
    fn parses_whitespace_and_escapes() {
        let f = parse(b" [ \"1\" , null ,\n\"room:\\\"q\\\"\\u00e9\", \"ev\\\\\" , [1, 2] ] \n").unwrap();
        assert_eq!(f.join_ref, Some(b("1")));
        assert_eq!(f.msg_ref, None);
        assert_eq!(f.topic, "room:\"q\"\u{e9}");
        assert!(matches!(f.topic, Cow::Owned(_)));
        assert_eq!(f.event, "ev\\");
        assert_eq!(f.payload, b"[1, 2]");
        let f = parse(br#"[null,null,"t","e","str]ing"]"#).unwrap();
        assert_eq!(f.payload, br#""str]ing""#);
        let f = parse(br#"[null,null,"t","e",null]"#).unwrap();
        assert_eq!(f.payload, b"null");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"{}",
            b"[",
            b"[null,null,\"t\"]",
            b"[null,null,\"t\",\"e\"]",
            b"[null,null,\"t\",\"e\",]",
            b"[null,null,\"t\",\"e\",{}",
            b"[null,null,null,\"e\",{}]",
            b"[null,null,\"t\",null,{}]",
            b"[1,null,\"t\",\"e\",{}]",
            b"[null,null,\"t\",\"e\",{}]x",
            b"[null,null,\"unterminated,\"e\",{}]",
            b"[null,null,\"bad \\q escape\",\"e\",{}]",
            b"[nul",
        ] {
            assert!(parse(bad).is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn encodes_pushes() {
        let mut out = Vec::new();
        encode(&mut out, Some("3"), Some("5"), "room:lobby", "echo", br#"{"hello":"world","n":1}"#);
        assert_eq!(out, br#"["3","5","room:lobby","echo",{"hello":"world","n":1}]"#);
        out.clear();
        encode(&mut out, None, Some("4"), "phoenix", "heartbeat", b"{}");
        assert_eq!(out, br#"[null,"4","phoenix","heartbeat",{}]"#);
        out.clear();
        encode(&mut out, Some("1"), Some("1"), "room:\"x\"", "phx_join", b"{}");
        assert_eq!(out, br#"["1","1","room:\"x\"","phx_join",{}]"#);
        // round trip through the parser
        let f = parse(&out).unwrap();
        assert_eq!(f.topic, "room:\"x\"");
        assert_eq!(f.event, "phx_join");
    }

    #[test]
    fn edge_integer_fast_path() {
        assert_eq!(edge_u64(br#"{"body":"bbbb","i":42}"#, "i"), Some(42));
        assert_eq!(edge_u64(br#"{"i":7,"body":"x"}"#, "i"), Some(7));
        assert_eq!(edge_u64(br#"{"i":1000}"#, "i"), Some(1000));
        assert_eq!(edge_u64(br#"{"body":"has \"i\":5 inside","i":6}"#, "i"), Some(6));
        // a string that ends like the key is not a member
        assert_eq!(edge_u64(br#"{"body":"x\"i\":5"}"#, "i"), None);
        assert_eq!(edge_u64(br#"{"xi":5}"#, "i"), None);
        assert_eq!(edge_u64(br#"{"i":-5}"#, "i"), None);
        assert_eq!(edge_u64(br#"{"i":5.5}"#, "i"), None);
        assert_eq!(edge_u64(br#"{"i":"5"}"#, "i"), None);
        assert_eq!(edge_u64(br#"{"body":"x", "i": 5}"#, "i"), None); // spaced: serde's job
        assert_eq!(edge_u64(br#"{}"#, "i"), None);
        assert_eq!(edge_u64(br#"{"i":}"#, "i"), None);
        assert_eq!(edge_u64(br#"{"i":99999999999999999999}"#, "i"), None);
    }

    #[test]
    fn scenario_payloads() {
        let s: Stamp = serde_json::from_slice(br#"{"t":123456789012,"seq":7,"body":"xx"}"#).unwrap();
        assert_eq!((s.t, s.seq), (123456789012, 7));
        let e: EchoReply = serde_json::from_slice(br#"{"response":{"k":9,"body":"zz"},"status":"ok"}"#).unwrap();
        assert_eq!((&*e.status, e.response.k), ("ok", 9));
        let r: Reply = serde_json::from_slice(br#"{"response":{"reason":"unauthorized"},"status":"error"}"#).unwrap();
        assert_eq!(r.status, "error");
    }
}
