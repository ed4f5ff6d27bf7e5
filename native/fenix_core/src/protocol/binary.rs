//! Serializer 2.0.0, binary frames: a kind byte, one-byte lengths, the strings, the raw payload.
//!
//! - client push: `0 | len(join_ref) len(ref) len(topic) len(event) | strings | payload`
//! - server reply: `1 | len(join_ref) len(ref) len(topic) len(status) | strings | payload`
//! - server broadcast: `2 | len(topic) len(event) | topic event | payload`
//! - server push: `0 | len(join_ref) len(topic) len(event) | strings | payload`
//!
//! Every length is in bytes (a non-ASCII topic's UTF-8), and a field longer than 255
//! bytes is refused, never cut. A missing `join_ref` or `ref` is the empty string; a
//! client's refs here are strings, and a number ref of a text push goes out as its text
//! (`5` as `"5"`), as Phoenix's `to_string/1` writes it (see [`ClientRef`]). A leaf
//! below `v2`, which picks these frames for binary bodies: the writers here take the
//! slots of one message kind each, not an `Outgoing`, so they cannot be handed a JSON body.

use bytes::Bytes;

use crate::error::{EncodeError, ProtocolError};

use super::client_ref::ClientRef;
use super::event::{Event, Status};
use super::message::{Encoded, Message, Payload};

const PUSH: u8 = 0;
const REPLY: u8 = 1;
const BROADCAST: u8 = 2;

/// Decodes a client push (kind 0).
pub(super) fn decode(data: &[u8]) -> Result<Message, ProtocolError> {
    let [kind, join_ref_len, ref_len, topic_len, event_len, rest @ ..] = data else {
        return Err(ProtocolError::MalformedBinary("frame shorter than its header"));
    };
    if *kind != PUSH {
        return Err(ProtocolError::MalformedBinary("clients may only send kind 0 (push)"));
    }
    let mut rest = rest;
    let mut field = |len: u8| -> Result<String, ProtocolError> {
        let len = usize::from(len);
        if rest.len() < len {
            return Err(ProtocolError::MalformedBinary("header lengths exceed the frame"));
        }
        let (head, tail) = rest.split_at(len);
        rest = tail;
        String::from_utf8(head.to_vec()).map_err(|_| ProtocolError::MalformedBinary("header field is not UTF-8"))
    };
    let join_ref = field(*join_ref_len)?;
    let r#ref = field(*ref_len)?;
    let topic = field(*topic_len)?;
    let event = field(*event_len)?;
    let non_empty = |s: String| (!s.is_empty()).then(|| ClientRef::from(s));
    Ok(Message {
        join_ref: non_empty(join_ref),
        r#ref: non_empty(r#ref),
        topic,
        event: Event::from_wire(event),
        payload: Payload::Binary(Bytes::copy_from_slice(rest)),
    })
}

/// Appends a reply (kind 1) with a binary response.
pub(super) fn encode_reply(
    out: &mut Vec<u8>,
    join_ref: Option<&ClientRef>,
    r#ref: Option<&ClientRef>,
    topic: &str,
    status: Status<'_>,
    response: &[u8],
) -> Result<Encoded, EncodeError> {
    let fields = [
        ("join_ref", ref_field("join_ref", join_ref)?),
        ("ref", ref_field("ref", r#ref)?),
        ("topic", topic),
        ("status", status.as_str()),
    ];
    write(out, REPLY, fields, response)
}

/// Appends a push to one client's channel (kind 0, no `ref`) with a binary payload.
pub(super) fn encode_push(
    out: &mut Vec<u8>,
    join_ref: Option<&ClientRef>,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Result<Encoded, EncodeError> {
    write(out, PUSH, [("join_ref", ref_field("join_ref", join_ref)?), ("topic", topic), ("event", event)], payload)
}

/// Appends a broadcast (kind 2, neither `join_ref` nor `ref`) with a binary payload.
pub(super) fn encode_broadcast(
    out: &mut Vec<u8>,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Result<Encoded, EncodeError> {
    write(out, BROADCAST, broadcast_fields(topic, event), payload)
}

fn broadcast_fields<'a>(topic: &'a str, event: &'a str) -> [(&'static str, &'a str); 2] {
    [("topic", topic), ("event", event)]
}

/// The header field of a ref: empty when missing, refused when it has no text.
fn ref_field<'a>(field: &'static str, value: Option<&'a ClientRef>) -> Result<&'a str, EncodeError> {
    match value {
        None => Ok(""),
        Some(r) => r.binary_field().ok_or(EncodeError::RefNotBinary { field }),
    }
}

/// Checks that a broadcast's header fields fit a binary frame, without writing it: a
/// broadcast is encoded in the fan-out, after its caller has returned.
pub(super) fn check_broadcast(topic: &str, event: &str) -> Result<(), EncodeError> {
    lengths(broadcast_fields(topic, event)).map(drop)
}

/// Appends `kind`, the lengths of the named `fields`, the fields, and the payload.
/// A field longer than a length byte can say is refused before anything is written,
/// so that `out` is left as it was.
fn write<const N: usize>(
    out: &mut Vec<u8>,
    kind: u8,
    fields: [(&'static str, &str); N],
    payload: &[u8],
) -> Result<Encoded, EncodeError> {
    let lengths = lengths(fields)?;
    out.push(kind);
    out.extend_from_slice(&lengths);
    for (_, value) in fields {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(payload);
    Ok(Encoded::Binary)
}

/// The length byte of each field, or the first field too long for one.
fn lengths<const N: usize>(fields: [(&'static str, &str); N]) -> Result<[u8; N], EncodeError> {
    let mut lengths = [0u8; N];
    for (length, (field, value)) in lengths.iter_mut().zip(fields) {
        *length = u8::try_from(value.len()).map_err(|_| EncodeError::FieldTooLong { field, size: value.len() })?;
    }
    Ok(lengths)
}

#[cfg(test)]
mod tests {
    use super::*;

    // from shared/vectors/phoenix_wire_frames.md: `bin` with payload 00 01 02 03 fe ff on
    // room:lobby, join_ref "3", ref "14"; `shout_bin` 09 08 07.
    const PUSHED: &[u8] = b"\x00\x01\x02\x0a\x03314room:lobbybin\x00\x01\x02\x03\xfe\xff";
    const PAYLOAD: &[u8] = b"\x00\x01\x02\x03\xfe\xff";

    #[test]
    fn decodes_the_push_of_the_phoenix_client() {
        let msg = decode(PUSHED).unwrap();
        assert_eq!(msg.join_ref, Some("3".into()));
        assert_eq!(msg.r#ref, Some("14".into()));
        assert_eq!(msg.topic, "room:lobby");
        assert_eq!(msg.event, Event::Custom("bin".into()));
        assert_eq!(msg.payload, Payload::Binary(Bytes::from_static(PAYLOAD)));
    }

    #[test]
    fn empty_refs_decode_as_none() {
        let msg = decode(b"\x00\x00\x00\x01\x01te").unwrap();
        assert_eq!((msg.join_ref, msg.r#ref), (None, None));
        assert_eq!(msg.payload, Payload::Binary(Bytes::new()));
    }

    #[test]
    fn rejects_truncated_frames() {
        for bad in [&b""[..], b"\x00\x01\x02", b"\x00\x01\x02\x0a\x03314room", b"\x01\x00\x00\x00\x00"] {
            assert!(matches!(decode(bad), Err(ProtocolError::MalformedBinary(_))), "{bad:?}");
        }
    }

    #[test]
    fn encodes_a_reply_like_phoenix() {
        let mut out = Vec::new();
        let kind = encode_reply(&mut out, Some(&"3".into()), Some(&"14".into()), "room:lobby", Status::Ok, PAYLOAD);
        assert_eq!(kind, Ok(Encoded::Binary));
        assert_eq!(out, b"\x01\x01\x02\x0a\x02314room:lobbyok\x00\x01\x02\x03\xfe\xff");
    }

    #[test]
    fn encodes_a_push_like_phoenix() {
        // Phoenix's V2.JSONSerializer: kind 0 without the ref slot.
        let mut out = Vec::new();
        assert_eq!(encode_push(&mut out, Some(&"3".into()), "room:lobby", "bin", PAYLOAD), Ok(Encoded::Binary));
        assert_eq!(out, b"\x00\x01\x0a\x033room:lobbybin\x00\x01\x02\x03\xfe\xff");
    }

    #[test]
    fn encodes_a_broadcast_like_phoenix() {
        let mut out = Vec::new();
        assert_eq!(encode_broadcast(&mut out, "room:lobby", "bin", b"\x09\x08\x07"), Ok(Encoded::Binary));
        assert_eq!(out, b"\x02\x0a\x03room:lobbybin\x09\x08\x07");
    }

    #[test]
    fn missing_refs_are_empty_strings() {
        let mut out = Vec::new();
        encode_reply(&mut out, None, None, "t", Status::Error, b"x").unwrap();
        assert_eq!(out, b"\x01\x00\x00\x01\x05terrorx");
    }

    #[test]
    fn a_number_ref_goes_out_as_its_text_as_phoenix_to_string_writes_it() {
        // A binary reply to `[3,14,"room:lobby","bin",...]`-style refs of a text client.
        let (join_ref, r#ref) = (json_ref("3"), json_ref("14"));
        let mut out = Vec::new();
        encode_reply(&mut out, Some(&join_ref), Some(&r#ref), "room:lobby", Status::Ok, b"x").unwrap();
        assert_eq!(out, b"\x01\x01\x02\x0a\x02314room:lobbyokx");
        out.clear();
        encode_push(&mut out, Some(&json_ref("2.5")), "t", "e", b"").unwrap();
        assert_eq!(out, b"\x00\x03\x01\x012.5te");
    }

    #[test]
    fn refuses_an_array_or_object_ref_and_writes_nothing() {
        let mut out = b"kept".to_vec();
        for bad in ["[1]", r#"{"a":1}"#] {
            assert_eq!(
                encode_reply(&mut out, Some(&json_ref(bad)), None, "t", Status::Ok, b""),
                Err(EncodeError::RefNotBinary { field: "join_ref" })
            );
            assert_eq!(
                encode_reply(&mut out, None, Some(&json_ref(bad)), "t", Status::Ok, b""),
                Err(EncodeError::RefNotBinary { field: "ref" })
            );
            assert_eq!(
                encode_push(&mut out, Some(&json_ref(bad)), "t", "e", b""),
                Err(EncodeError::RefNotBinary { field: "join_ref" })
            );
        }
        assert_eq!(out, b"kept");
    }

    fn json_ref(text: &str) -> ClientRef {
        ClientRef::from_json(text).unwrap().unwrap()
    }

    #[test]
    fn refuses_every_field_longer_than_its_length_byte_and_writes_nothing() {
        let long = "t".repeat(256);
        let long_ref = ClientRef::from(long.as_str());
        let (ok, short) = (Status::Ok, ClientRef::from("3"));
        let too_long = |field| Err(EncodeError::FieldTooLong { field, size: 256 });
        let mut out = b"kept".to_vec();
        assert_eq!(encode_broadcast(&mut out, &long, "bin", PAYLOAD), too_long("topic"));
        assert_eq!(encode_broadcast(&mut out, "room:lobby", &long, PAYLOAD), too_long("event"));
        assert_eq!(check_broadcast(&long, "bin"), too_long("topic").map(drop));
        assert_eq!(check_broadcast("room:lobby", &long), too_long("event").map(drop));
        assert_eq!(encode_push(&mut out, Some(&long_ref), "room:lobby", "bin", PAYLOAD), too_long("join_ref"));
        assert_eq!(encode_push(&mut out, Some(&short), &long, "bin", PAYLOAD), too_long("topic"));
        assert_eq!(encode_push(&mut out, Some(&short), "room:lobby", &long, PAYLOAD), too_long("event"));
        assert_eq!(encode_reply(&mut out, Some(&long_ref), Some(&short), "room:lobby", ok, PAYLOAD), too_long("join_ref"));
        assert_eq!(encode_reply(&mut out, Some(&short), Some(&long_ref), "room:lobby", ok, PAYLOAD), too_long("ref"));
        assert_eq!(encode_reply(&mut out, Some(&short), Some(&short), &long, ok, PAYLOAD), too_long("topic"));
        assert_eq!(encode_reply(&mut out, Some(&short), Some(&short), "room:lobby", Status::Other(&long), PAYLOAD), too_long("status"));
        assert_eq!(out, b"kept");
        // 255 bytes is the most a length byte says, and fits.
        assert_eq!(encode_broadcast(&mut out, &long[..255], "bin", PAYLOAD), Ok(Encoded::Binary));
        assert_eq!(check_broadcast(&long[..255], &long[..255]), Ok(()));
    }

    #[test]
    fn lengths_are_utf8_bytes_not_characters() {
        // "é" is 2 bytes: 127 of them fit a length byte (254), 128 (256) do not.
        let (fits, too_long) = ("é".repeat(127), "é".repeat(128));
        let mut out = Vec::new();
        encode_broadcast(&mut out, &fits, "ünï", b"").unwrap();
        assert_eq!(&out[..3], b"\x02\xfe\x05");
        assert_eq!(&out[3..], format!("{fits}ünï").as_bytes());
        assert_eq!(
            encode_broadcast(&mut Vec::new(), &too_long, "e", b""),
            Err(EncodeError::FieldTooLong { field: "topic", size: 256 })
        );
        assert_eq!(
            encode_push(&mut Vec::new(), Some(&ClientRef::from(too_long.as_str())), "t", "e", b""),
            Err(EncodeError::FieldTooLong { field: "join_ref", size: 256 })
        );
        // And a client's non-ASCII fields decode by their byte lengths.
        // kind 0, join_ref "é" (2 bytes), no ref, topic "lé" (3), event "é" (2)
        let msg = decode(concat!("\x00\x02\x00\x03\x02", "é", "lé", "é").as_bytes()).unwrap();
        assert_eq!((msg.join_ref, msg.topic.as_str(), msg.event.as_str()), (Some("é".into()), "lé", "é"));
    }
}
