//! Serializer 2.0.0, binary frames: a kind byte, one-byte lengths, the strings, the raw payload.
//!
//! - client push: `0 | len(join_ref) len(ref) len(topic) len(event) | strings | payload`
//! - server reply: `1 | len(join_ref) len(ref) len(topic) len(status) | strings | payload`
//! - server broadcast: `2 | len(topic) len(event) | topic event | payload`
//! - server push: `0 | len(join_ref) len(topic) len(event) | strings | payload`

use bytes::Bytes;

use crate::error::{EncodeError, ProtocolError};

use super::message::{Body, Encoded, Message, Outgoing, Payload};
use super::Event;

const PUSH: u8 = 0;
const REPLY: u8 = 1;
const BROADCAST: u8 = 2;

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

pub(super) fn encode(msg: &Outgoing<'_>, out: &mut Vec<u8>) -> Result<Encoded, EncodeError> {
    let Body::Binary(data) = msg.body else {
        unreachable!("binary::encode is only called for binary bodies")
    };
    let join_ref = msg.join_ref.unwrap_or("");
    let (kind, fields): (u8, &[(&'static str, &str)]) = match (msg.status, msg.join_ref, msg.r#ref) {
        (Some(status), _, r#ref) => {
            (REPLY, &[("join_ref", join_ref), ("ref", r#ref.unwrap_or("")), ("topic", msg.topic), ("status", status.as_str())])
        }
        (None, None, None) => (BROADCAST, &[("topic", msg.topic), ("event", msg.event)]),
        (None, _, _) => (PUSH, &[("join_ref", join_ref), ("topic", msg.topic), ("event", msg.event)]),
    };
    // Checked before anything is written, so that a refused message leaves `out` as it was.
    if let Some(&(field, value)) = fields.iter().find(|(_, value)| value.len() > usize::from(u8::MAX)) {
        return Err(EncodeError::FieldTooLong { field, size: value.len() });
    }
    out.push(kind);
    for (_, value) in fields {
        out.push(u8::try_from(value.len()).expect("checked above"));
    }
    for (_, value) in fields {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(data);
    Ok(Encoded::Binary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    #[test]
    fn decodes_the_push_of_the_phoenix_client() {
        // kind 0, lengths 1 2 10 3, "3" "14" "room:lobby" "bin", payload 00 01 02 03 fe ff
        let frame = b"\x00\x01\x02\x0a\x03314room:lobbybin\x00\x01\x02\x03\xfe\xff";
        let msg = decode(frame).unwrap();
        assert_eq!(msg.join_ref.as_deref(), Some("3"));
        assert_eq!(msg.r#ref.as_deref(), Some("14"));
        assert_eq!(msg.topic, "room:lobby");
        assert_eq!(msg.event, Event::Custom("bin".into()));
        assert_eq!(msg.payload, Payload::Binary(Bytes::from_static(b"\x00\x01\x02\x03\xfe\xff")));
    }

    #[test]
    fn encodes_reply_and_broadcast_like_phoenix() {
        let mut out = Vec::new();
        let reply = Outgoing::reply(Some("3"), Some("14"), "room:lobby", Status::Ok, Body::Binary(b"\x00\x01\x02\x03\xfe\xff"));
        assert_eq!(encode(&reply, &mut out), Ok(Encoded::Binary));
        assert_eq!(out, b"\x01\x01\x02\x0a\x02314room:lobbyok\x00\x01\x02\x03\xfe\xff");
        out.clear();
        encode(&Outgoing::broadcast("room:lobby", "bin", Body::Binary(b"\x09\x08\x07")), &mut out).unwrap();
        assert_eq!(out, b"\x02\x0a\x03room:lobbybin\x09\x08\x07");
    }

    #[test]
    fn a_field_too_long_for_its_length_byte_is_an_encode_error() {
        let topic = "t".repeat(300);
        let mut out = Vec::new();
        let shout = Outgoing::broadcast(&topic, "bin", Body::Binary(b"\x01"));
        assert_eq!(encode(&shout, &mut out), Err(EncodeError::FieldTooLong { field: "topic", size: 300 }));
        assert!(out.is_empty());
    }

    #[test]
    fn rejects_truncated_frames() {
        for bad in [&b""[..], b"\x00\x01\x02", b"\x00\x01\x02\x0a\x03314room", b"\x01\x00\x00\x00\x00"] {
            assert!(matches!(decode(bad), Err(ProtocolError::MalformedBinary(_))), "{bad:?}");
        }
    }
}
