//! Serializer 2.0.0, binary frames: a kind byte, one-byte lengths, the strings, the raw payload.
//!
//! - client push: `0 | len(join_ref) len(ref) len(topic) len(event) | strings | payload`
//! - server reply: `1 | len(join_ref) len(ref) len(topic) len(status) | strings | payload`
//! - server broadcast: `2 | len(topic) len(event) | topic event | payload`
//! - server push: `0 | len(join_ref) len(topic) len(event) | strings | payload`

use bytes::Bytes;

use crate::error::ProtocolError;

use super::message::{Body, Message, Outgoing, Payload};
use super::serializer::Encoded;
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

pub(super) fn encode(msg: &Outgoing<'_>, out: &mut Vec<u8>) -> Result<Encoded, ProtocolError> {
    let Body::Binary(data) = msg.body else {
        unreachable!("binary::encode is only called for binary bodies")
    };
    let join_ref = msg.join_ref.unwrap_or("");
    let fields: &[&str] = match (msg.status, msg.join_ref, msg.r#ref) {
        (Some(status), _, r#ref) => {
            out.push(REPLY);
            &[join_ref, r#ref.unwrap_or(""), msg.topic, status.as_str()]
        }
        (None, None, None) => {
            out.push(BROADCAST);
            &[msg.topic, msg.event]
        }
        (None, _, _) => {
            out.push(PUSH);
            &[join_ref, msg.topic, msg.event]
        }
    };
    for field in fields {
        let len = u8::try_from(field.len())
            .map_err(|_| ProtocolError::MalformedBinary("binary header fields are limited to 255 bytes"))?;
        out.push(len);
    }
    for field in fields {
        out.extend_from_slice(field.as_bytes());
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
    fn rejects_truncated_frames() {
        for bad in [&b""[..], b"\x00\x01\x02", b"\x00\x01\x02\x0a\x03314room", b"\x01\x00\x00\x00\x00"] {
            assert!(matches!(decode(bad), Err(ProtocolError::MalformedBinary(_))), "{bad:?}");
        }
    }
}
