//! Serializer 1.0.0: JSON objects, no `join_ref` in server messages.

use serde::Deserialize;

use crate::error::{EncodeError, ProtocolError};

use super::json::{write_opt_str, write_reply, write_str};
use super::message::{Body, Encoded, Message, Outgoing, Payload};
use super::Event;

/// A client message: `{"topic":..,"event":..,"payload":..,"ref":..,"join_ref":..}`.
#[derive(Deserialize)]
struct Incoming {
    topic: String,
    event: String,
    payload: serde_json::Value,
    #[serde(rename = "ref")]
    r#ref: Option<String>,
    #[serde(default)]
    join_ref: Option<String>,
}

pub(super) fn decode(text: &[u8]) -> Result<Message, ProtocolError> {
    let msg: Incoming = serde_json::from_slice(text)
        .map_err(|e| ProtocolError::MalformedMessage(format!("vsn 1.0.0: {e}")))?;
    Ok(Message {
        join_ref: msg.join_ref,
        r#ref: msg.r#ref,
        topic: msg.topic,
        event: Event::from_wire(msg.event),
        payload: Payload::Json(msg.payload),
    })
}

/// `{"event":E,"payload":P,"ref":R,"topic":T}`: keys in Jason's (sorted) order.
pub(super) fn encode(msg: &Outgoing<'_>, out: &mut Vec<u8>) -> Result<Encoded, EncodeError> {
    let Body::Json(body) = msg.body else {
        return Err(EncodeError::BinaryNeedsV2);
    };
    out.extend_from_slice(b"{\"event\":");
    write_str(out, msg.event);
    out.extend_from_slice(b",\"payload\":");
    match msg.status {
        None => out.extend_from_slice(body),
        Some(status) => write_reply(out, body, status.as_str()),
    }
    out.extend_from_slice(b",\"ref\":");
    write_opt_str(out, msg.r#ref);
    out.extend_from_slice(b",\"topic\":");
    write_str(out, msg.topic);
    out.push(b'}');
    Ok(Encoded::Text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    fn encoded(msg: Outgoing<'_>) -> String {
        let mut out = Vec::new();
        assert_eq!(encode(&msg, &mut out), Ok(Encoded::Text));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decodes_a_push_of_the_phoenix_client() {
        // join_ref and ref are strings; payload any JSON
        let msg = decode(br#"{"topic":"room:v1","event":"echo","payload":{"hello":"v1"},"ref":"5","join_ref":"3"}"#)
            .unwrap();
        assert_eq!(msg.topic, "room:v1");
        assert_eq!(msg.event, Event::Custom("echo".into()));
        assert_eq!(msg.r#ref.as_deref(), Some("5"));
        assert_eq!(msg.join_ref.as_deref(), Some("3"));
        assert_eq!(msg.payload, Payload::Json(serde_json::json!({"hello": "v1"})));
    }

    #[test]
    fn join_ref_is_optional() {
        let msg = decode(br#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"4"}"#).unwrap();
        assert_eq!(msg.event, Event::Heartbeat);
        assert_eq!(msg.join_ref, None);
    }

    #[test]
    fn rejects_malformed_messages() {
        for bad in [&b"not json"[..], b"[]", b"{}", br#"{"topic":1,"event":"e","payload":{},"ref":null}"#] {
            assert!(matches!(decode(bad), Err(ProtocolError::MalformedMessage(_))), "{bad:?}");
        }
    }

    #[test]
    fn encodes_the_frames_phoenix_sends() {
        // from shared/vectors/phoenix_wire_frames.md
        assert_eq!(
            encoded(Outgoing::reply(Some("3"), Some("5"), "room:v1", Status::Ok, Body::Json(br#"{"hello":"v1"}"#))),
            r#"{"event":"phx_reply","payload":{"response":{"hello":"v1"},"status":"ok"},"ref":"5","topic":"room:v1"}"#
        );
        assert_eq!(
            encoded(Outgoing::broadcast("room:v1", "shout", Body::Json(br#"{"msg":"v1 shout"}"#))),
            r#"{"event":"shout","payload":{"msg":"v1 shout"},"ref":null,"topic":"room:v1"}"#
        );
        assert_eq!(
            encoded(Outgoing::channel_ended(Some("10"), "room:v1crash", Event::Error)),
            r#"{"event":"phx_error","payload":{"reason":"channel_crash"},"ref":"10","topic":"room:v1crash"}"#
        );
    }
}
