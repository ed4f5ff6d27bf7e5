//! Serializer 2.0.0, binary frames: a kind byte, one-byte lengths, the strings, the raw payload.
//!
//! - client push: `0 | len(join_ref) len(ref) len(topic) len(event) | strings | payload`
//! - server reply: `1 | len(join_ref) len(ref) len(topic) len(status) | strings | payload`
//! - server broadcast: `2 | len(topic) len(event) | topic event | payload`
//! - server push: `0 | len(join_ref) len(topic) len(event) | strings | payload`
//!
//! A missing `join_ref` or `ref` is the empty string. A leaf below `v2`, which
//! picks these frames for binary bodies: the writers here take the slots of one message
//! kind each, not an `Outgoing`, so they cannot be handed a JSON body.

use bytes::Bytes;

use crate::error::{EncodeError, ProtocolError};

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
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
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
    join_ref: Option<&str>,
    r#ref: Option<&str>,
    topic: &str,
    status: Status<'_>,
    response: &[u8],
) -> Result<Encoded, EncodeError> {
    let fields = [
        ("join_ref", join_ref.unwrap_or("")),
        ("ref", r#ref.unwrap_or("")),
        ("topic", topic),
        ("status", status.as_str()),
    ];
    write(out, REPLY, fields, response)
}

/// Appends a push to one client's channel (kind 0, no `ref`) with a binary payload.
pub(super) fn encode_push(
    out: &mut Vec<u8>,
    join_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Result<Encoded, EncodeError> {
    write(out, PUSH, [("join_ref", join_ref.unwrap_or("")), ("topic", topic), ("event", event)], payload)
}

/// Appends a broadcast (kind 2, neither `join_ref` nor `ref`) with a binary payload.
pub(super) fn encode_broadcast(
    out: &mut Vec<u8>,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Result<Encoded, EncodeError> {
    write(out, BROADCAST, [("topic", topic), ("event", event)], payload)
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
    let mut lengths = [0u8; N];
    for (length, (field, value)) in lengths.iter_mut().zip(fields) {
        *length = u8::try_from(value.len()).map_err(|_| EncodeError::FieldTooLong { field, size: value.len() })?;
    }
    out.push(kind);
    out.extend_from_slice(&lengths);
    for (_, value) in fields {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(payload);
    Ok(Encoded::Binary)
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
        assert_eq!(msg.join_ref.as_deref(), Some("3"));
        assert_eq!(msg.r#ref.as_deref(), Some("14"));
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
        let kind = encode_reply(&mut out, Some("3"), Some("14"), "room:lobby", Status::Ok, PAYLOAD);
        assert_eq!(kind, Ok(Encoded::Binary));
        assert_eq!(out, b"\x01\x01\x02\x0a\x02314room:lobbyok\x00\x01\x02\x03\xfe\xff");
    }

    #[test]
    fn encodes_a_push_like_phoenix() {
        // Phoenix's V2.JSONSerializer: kind 0 without the ref slot.
        let mut out = Vec::new();
        assert_eq!(encode_push(&mut out, Some("3"), "room:lobby", "bin", PAYLOAD), Ok(Encoded::Binary));
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
    fn refuses_a_field_longer_than_its_length_byte_and_writes_nothing() {
        let long = "t".repeat(256);
        let mut out = b"kept".to_vec();
        assert_eq!(
            encode_broadcast(&mut out, &long, "bin", PAYLOAD),
            Err(EncodeError::FieldTooLong { field: "topic", size: 256 })
        );
        assert_eq!(
            encode_push(&mut out, Some("3"), "room:lobby", &long, PAYLOAD),
            Err(EncodeError::FieldTooLong { field: "event", size: 256 })
        );
        assert_eq!(
            encode_reply(&mut out, Some("3"), Some("14"), "room:lobby", Status::Other(&long), PAYLOAD),
            Err(EncodeError::FieldTooLong { field: "status", size: 256 })
        );
        assert_eq!(out, b"kept");
        // 255 bytes is the most a length byte says, and fits.
        assert_eq!(encode_broadcast(&mut out, &long[..255], "bin", PAYLOAD), Ok(Encoded::Binary));
    }
}
