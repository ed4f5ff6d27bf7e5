//! The functions the coverage-guided fuzz targets of `fuzz/` call, one per target, each
//! checking more than "no panic": a failed property panics, which is how libFuzzer
//! sees a finding.
//!
//! - [`frame_reader`]: client bytes after a message limit and a split; the same frames
//!   and the same end whether the bytes come whole or in parts, no message over the
//!   limit, control payloads of at most 125 bytes, a ping's pong well formed, a close
//!   answered with a code that may go on the wire.
//! - [`v1_json`], [`v2_json`]: a text frame; a decoded message, pushed back, decodes to
//!   itself, and a reply carries its `ref` back.
//! - [`v2_binary`]: a binary frame; a decoded push, written back, is the same bytes, its
//!   reply and broadcast fit binary frames, and 1.0.0 refuses binary frames.
//! - [`http_head`]: a request head; a complete head, cut before its end, needs more
//!   bytes, a partial one past the head limit is refused, and what parsed goes through
//!   the upgrade's steps (handshake check, query, vsn, subprotocols), each checked.
//!
//! - [`longpoll_body`]: a long-poll POST body; what parses keeps to the batch and
//!   message bounds, JSON lines are as sent, and a body without ndjson is one message.
//!
//! Why a module behind a feature: the HTTP head parser and the upgrade's steps are
//! private to the server, and the targets, a crate of their own (cargo fuzz builds it
//! with nightly and sanitizers, outside the workspace), could not reach them. This
//! module reaches them from inside the crate, so that nothing else becomes public. It
//! is compiled with the `fuzzing` feature, which only the fuzz crate turns on, and in
//! this crate's tests, which replay every committed input (`fuzz/seeds/<target>/`,
//! `fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through these same functions
//! on stable: a crash once found stays found.

use serde_json::Value;

use crate::protocol::{Body, ClientRef, Encoded, Event, Message, Outgoing, Payload, Serializer, Status};
use crate::server::{auth_token, offered_protocols, parse_body, parse_head, parse_query, BodyError, Line, Request, MAX_BATCH, MAX_HEAD, MAX_HEADERS};
use crate::websocket::{accept_key, check_upgrade, frame, CloseCode, Frame, Opcode, Reader};
use crate::ProtocolError;

/// Client bytes through a [`Reader`], once whole and once in chunks (as they arrive
/// from the socket), with the session's buffering: both must give the same frames and
/// end the same way, and each frame keeps to the limits (see `checked`).
///
/// Input: a big-endian `u16` message limit (`max_frame_size`), one byte that picks the
/// chunk sizes (0: one byte at a time; `n`: sizes from 1 to `n`), then the bytes.
pub fn frame_reader(data: &[u8]) {
    let [limit_high, limit_low, split, input @ ..] = data else { return };
    let max_message = usize::from(u16::from_be_bytes([*limit_high, *limit_low]));
    let whole = read_all(max_message, input, std::iter::repeat(input.len().max(1)));
    let split = read_all(max_message, input, chunk_sizes(*split));
    assert_eq!(whole, split, "the same bytes in another split gave other frames");
}

/// What a reader made of some bytes: the frames, then how it ended.
#[derive(Debug, PartialEq, Eq)]
struct ReadAll {
    frames: Vec<(&'static str, Vec<u8>)>,
    /// `Ok(n)`: out of bytes with `n` of them waiting for the rest of their frame;
    /// `Err`: the error that closes the connection.
    end: Result<usize, String>,
}

/// Feeds `input` to a fresh reader in chunks of the given sizes, keeping what a parse
/// left for the next chunk as the session does.
fn read_all(max_message: usize, input: &[u8], mut chunks: impl Iterator<Item = usize>) -> ReadAll {
    let mut reader = Reader::new(max_message);
    let (mut frames, mut unparsed, mut rest) = (Vec::new(), Vec::new(), input);
    loop {
        let size = chunks.next().unwrap_or(1).max(1).min(rest.len());
        unparsed.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        let mut pos = 0;
        loop {
            let available = unparsed.len() - pos;
            match reader.read(&mut unparsed[pos..]) {
                Ok(Some(read)) => {
                    let consumed = read.consumed;
                    assert!(consumed > 0 && consumed <= available, "consumed {consumed} of {available}");
                    pos += read.consumed;
                    if let Some(frame) = read.frame {
                        frames.push(checked(frame, max_message));
                    }
                }
                Ok(None) => break,
                Err(error) => return ReadAll { frames, end: Err(error.to_string()) },
            }
        }
        unparsed.drain(..pos);
        if rest.is_empty() {
            return ReadAll { frames, end: Ok(unparsed.len()) };
        }
    }
}

/// A frame, owned, after checking it: a message within `max_message`, a control
/// payload within 125 bytes, a ping's pong well formed, a close answered with a code
/// that may go on the wire.
fn checked(frame: Frame<'_>, max_message: usize) -> (&'static str, Vec<u8>) {
    let (kind, payload) = match frame {
        Frame::Text(text) => ("text", text),
        Frame::Binary(data) => ("binary", data),
        Frame::Ping(payload) => {
            // The session echoes the payload in a pong, which must fit a control frame.
            let pong = frame::control(Opcode::Pong, payload);
            assert_eq!((pong[0], usize::from(pong[1]), &pong[2..]), (0x8A, payload.len(), payload));
            ("ping", payload)
        }
        Frame::Pong(payload) => ("pong", payload),
        Frame::Close(payload) => {
            // 1005, 1006 and 1015 are only ever reported locally (RFC6455§7.4.1).
            let code = CloseCode::echo(payload).as_u16();
            assert!((1000..5000).contains(&code) && ![1005, 1006, 1015].contains(&code), "close answered with {code}");
            ("close", payload)
        }
    };
    let limit = if matches!(kind, "text" | "binary") { max_message } else { 125 };
    assert!(payload.len() <= limit, "a {kind} frame of {} bytes passed a limit of {limit}", payload.len());
    (kind, payload.to_vec())
}

/// Chunk sizes from 1 to `max` (1 when `max` is 0), from a small xorshift generator
/// seeded by `max`: the same input always splits the same way.
fn chunk_sizes(max: u8) -> impl Iterator<Item = usize> {
    let mut state = u32::from(max).wrapping_mul(0x9E37_79B9) | 1;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + state as usize % usize::from(max.max(1))
    })
}

/// A text frame through serializer 1.0.0, and back; see [`json_round_trip`].
pub fn v1_json(text: &[u8]) {
    json_round_trip(Serializer::V1, text);
}

/// A text frame through serializer 2.0.0, and back; see [`json_round_trip`].
pub fn v2_json(text: &[u8]) {
    json_round_trip(Serializer::V2, text);
}

/// A message that decodes, sent back as a push of its own topic, event and payload (and
/// `join_ref`, which only 2.0.0 carries), decodes to the same; sent back as a reply, it
/// carries its `ref` back.
fn json_round_trip(serializer: Serializer, text: &[u8]) {
    let Ok(msg) = serializer.decode_text(text) else { return };
    let Payload::Json(payload) = &msg.payload else { panic!("a text frame decoded to a binary payload") };
    let join_ref = match serializer {
        Serializer::V1 => None,
        Serializer::V2 => msg.join_ref.as_ref(),
    };
    let body = serde_json::to_vec(payload).expect("a decoded payload encodes");
    let push = Outgoing::push(msg.join_ref.as_ref(), &msg.topic, msg.event.as_str(), Body::Json(&body));
    let pushed = encode_decode(serializer, &push);
    assert_eq!((pushed.join_ref.as_ref(), pushed.r#ref.as_ref()), (join_ref, None));
    assert_eq!((&pushed.topic, &pushed.event), (&msg.topic, &msg.event));
    match &pushed.payload {
        Payload::Json(again) => assert!(same_json(payload, again), "payload {payload} came back as {again}"),
        Payload::Binary(_) => panic!("a JSON push came back binary"),
    }

    let (join_ref_in, ref_in) = (msg.join_ref.as_ref(), msg.r#ref.as_ref());
    let reply = Outgoing::reply(join_ref_in, ref_in, &msg.topic, Status::Ok, Body::Json(b"{}"));
    let replied = encode_decode(serializer, &reply);
    assert_eq!((replied.join_ref.as_ref(), replied.r#ref.as_ref()), (join_ref, ref_in));
    assert_eq!((&replied.topic, &replied.event), (&msg.topic, &Event::Reply));
    assert_eq!(replied.payload, Payload::Json(serde_json::json!({"response": {}, "status": "ok"})));
}

fn encode_decode(serializer: Serializer, msg: &Outgoing<'_>) -> Message {
    let mut out = Vec::new();
    assert_eq!(serializer.encode(msg, &mut out), Ok(Encoded::Text), "{msg:?}");
    match serializer.decode_text(&out) {
        Ok(decoded) => decoded,
        Err(error) => panic!("{msg:?} encoded as {:?}, which does not decode: {error}", String::from_utf8_lossy(&out)),
    }
}

/// JSON equality, but for floats within a few units in the last place: serde_json
/// parses floats fast, not exactly (its `float_roundtrip` feature is off), so a float
/// written back and parsed again may move by one.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let close = |(x, y): (f64, f64)| (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs());
            x == y || x.as_f64().zip(y.as_f64()).is_some_and(close)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, x)| y.get(key).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

/// A binary frame through serializer 2.0.0: a push that decodes is its fields and
/// payload, so writing them back gives the same bytes; each field came with a length
/// byte, so the reply and the broadcast of that payload fit binary frames too.
pub fn v2_binary(data: &[u8]) {
    assert_eq!(Serializer::V1.decode_binary(data), Err(ProtocolError::BinaryNotSupported));
    let Ok(msg) = Serializer::V2.decode_binary(data) else { return };
    let Payload::Binary(payload) = &msg.payload else { panic!("a binary frame decoded to a JSON payload") };
    let (join_ref, r#ref) = (binary_ref(&msg.join_ref), binary_ref(&msg.r#ref));
    let fields = [join_ref, r#ref, msg.topic.as_str(), msg.event.as_str()];
    let mut rebuilt = vec![0];
    rebuilt.extend(fields.map(|field| u8::try_from(field.len()).expect("a field of a length byte")));
    fields.iter().for_each(|field| rebuilt.extend_from_slice(field.as_bytes()));
    rebuilt.extend_from_slice(payload);
    assert_eq!(rebuilt, data, "the decoded fields are not the frame");

    let (join_ref_in, ref_in) = (msg.join_ref.as_ref(), msg.r#ref.as_ref());
    let reply = Outgoing::reply(join_ref_in, ref_in, &msg.topic, Status::Ok, Body::Binary(payload));
    let mut out = Vec::new();
    assert_eq!(Serializer::V2.encode(&reply, &mut out), Ok(Encoded::Binary));
    let status = Status::Ok.as_str();
    assert_eq!(out[..5], [1, fields[0].len() as u8, fields[1].len() as u8, fields[2].len() as u8, status.len() as u8]);
    assert_eq!(out.len(), 5 + join_ref.len() + r#ref.len() + msg.topic.len() + status.len() + payload.len());
    assert!(out.ends_with(payload));

    let broadcast = Outgoing::broadcast(&msg.topic, msg.event.as_str(), Body::Binary(payload));
    out.clear();
    assert_eq!(Serializer::V2.encode(&broadcast, &mut out), Ok(Encoded::Binary));
    assert_eq!(out.len(), 3 + msg.topic.len() + msg.event.as_str().len() + payload.len());
}

/// The text a ref of a binary frame came as (a missing one is empty).
fn binary_ref(r: &Option<ClientRef>) -> &str {
    r.as_ref().map_or("", |r| r.as_str().expect("the refs of a binary frame are strings"))
}

/// A request head through the server's parser, and what parsed through the steps of
/// an upgrade.
pub fn http_head(data: &[u8]) {
    let parsed = parse_head(data);
    match &parsed {
        Ok(None) => assert!(data.len() < MAX_HEAD, "a partial head of {} bytes was not refused", data.len()),
        Err(status) => assert!(matches!(status, 400 | 431), "refused with {status}"),
        Ok(Some((request, len))) => {
            assert!(*len <= data.len() && request.headers.len() <= MAX_HEADERS);
            assert_eq!(parse_head(&data[..*len]), parsed, "the head alone parses otherwise");
            // The server parses again after every read: a head that arrives in parts
            // must need more bytes until its end, never be refused on the way.
            for cut in [len / 2, len - 1] {
                let part = parse_head(&data[..cut]);
                assert!(part == Ok(None) || cut >= MAX_HEAD, "the head cut at {cut} of {len}: {part:?}");
            }
            upgrade(request);
        }
    }
}

/// A long-poll POST body through [`parse_body`].
///
/// Input: one byte whose low bit says `Content-Type: application/x-ndjson`, a big-endian
/// `u16` message limit, then the body.
pub fn longpoll_body(data: &[u8]) {
    let [flags, high, low, body @ ..] = data else { return };
    let (ndjson, max) = (flags & 1 == 1, usize::from(u16::from_be_bytes([*high, *low])));
    match parse_body(body, ndjson, max) {
        Ok(lines) if !ndjson => assert_eq!(lines, [Line::Text(body)], "a body without ndjson is one message"),
        Ok(lines) => {
            assert!(lines.len() <= MAX_BATCH, "{} lines in a batch", lines.len());
            for line in &lines {
                match line {
                    Line::Text(text) => assert!(text.len() <= max && matches!(text.first(), Some(b'[' | b'{')), "text line {text:?}"),
                    Line::Binary(data) => assert!(data.len() <= max, "a binary message of {} bytes, limit {max}", data.len()),
                }
            }
        }
        Err(BodyError::TooManyLines) => assert!(ndjson && body.split(|&b| b == b'\n').count() > MAX_BATCH),
        Err(BodyError::MessageTooLarge { size, max: limit }) => assert!(limit == max && size > max, "{size} refused, limit {max}"),
        Err(BodyError::InvalidBase64) => assert!(ndjson),
    }
}

/// The pure steps of `http::upgrade`, with what each promises.
fn upgrade(request: &Request) {
    if let Ok(key) = check_upgrade(&request.method, &request.headers) {
        assert_eq!(key.len(), 24, "a key of 16 bytes in base64");
        assert_eq!(accept_key(key.as_bytes()).len(), 28, "a SHA-1 in base64");
    }
    let params = parse_query(&request.query);
    // Decoded pairs, percent-encoded byte by byte, decode to themselves.
    let encode = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let encoded: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    assert_eq!(parse_query(&encoded.join("&")), params, "query {:?}", request.query);

    let vsn = params.iter().find(|(k, _)| k == "vsn").map(|(_, v)| v.as_str());
    match (Serializer::from_vsn(vsn), vsn) {
        (None, _) | (Some(Serializer::V1), None) => {}
        (Some(Serializer::V1), Some(vsn)) => assert!(vsn.starts_with("1.0."), "{vsn} taken for 1.0.0"),
        (Some(Serializer::V2), vsn) => assert!(vsn.is_some_and(|v| v.starts_with("2.0.")), "{vsn:?} taken for 2.0.0"),
    }
    let offered = offered_protocols(request);
    let _ = auth_token(&offered);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A target's name (its directory under `fuzz/seeds`, `corpus`, `regressions`) and
    /// the function it calls.
    type Target = (&'static str, fn(&[u8]));

    const TARGETS: [Target; 6] = [
        ("frame_reader", super::frame_reader),
        ("v1_json", super::v1_json),
        ("v2_json", super::v2_json),
        ("v2_binary", super::v2_binary),
        ("http_head", super::http_head),
        ("longpoll_body", super::longpoll_body),
    ];

    /// Runs every committed input of `target` (seeds, corpus and regressions) through
    /// `run`: how many there were, and the files that fail.
    fn replay(target: &str, run: fn(&[u8])) -> (usize, Vec<String>) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let (mut replayed, mut failed) = (0, Vec::new());
        for dir in ["seeds", "corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
            for entry in entries {
                let path = entry.expect("a readable directory").path();
                let data = std::fs::read(&path).expect("a readable input");
                if std::panic::catch_unwind(|| run(&data)).is_err() {
                    failed.push(path.display().to_string());
                }
                replayed += 1;
            }
        }
        (replayed, failed)
    }

    #[test]
    fn every_committed_input_passes_its_target() {
        for (target, run) in TARGETS {
            let (replayed, failed) = replay(target, run);
            assert!(replayed > 0, "{target}: no committed inputs");
            assert!(failed.is_empty(), "{target} fails on {failed:#?}");
        }
    }
}
