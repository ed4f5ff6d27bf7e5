//! Serializer 1.0.0: JSON objects, no `join_ref` in server messages, no binary payloads.

use serde::Deserialize;

use crate::error::{EncodeError, ProtocolError};

use super::client_ref::{write_opt_ref, ClientRef};
use super::event::{self, Event};
use super::json::{write_reply, write_str};
use super::message::{Body, Encoded, Message, Outgoing, Payload};

/// A client message: `{"topic":..,"event":..,"payload":..,"ref":..,"join_ref":..}`;
/// `ref` and `join_ref` may be any JSON value (see [`ClientRef`]).
#[derive(Deserialize)]
struct Incoming {
    topic: String,
    event: String,
    payload: serde_json::Value,
    #[serde(rename = "ref")]
    r#ref: Option<ClientRef>,
    #[serde(default)]
    join_ref: Option<ClientRef>,
}

pub(super) fn decode(text: &[u8]) -> Result<Message, ProtocolError> {
    let malformed = |detail: &dyn std::fmt::Display| ProtocolError::MalformedMessage(format!("vsn 1.0.0: {detail}"));
    // A derived struct takes a JSON array too (its fields in order), and with refs of any
    // value `["1","1","room:lobby","echo",{}]` would pass; Phoenix's 1.0.0 takes objects only.
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(malformed(&"expected a JSON object"));
    }
    let msg: Incoming = serde_json::from_slice(text).map_err(|e| malformed(&e))?;
    Ok(Message {
        join_ref: msg.join_ref,
        r#ref: msg.r#ref,
        topic: msg.topic,
        event: Event::from_wire(msg.event),
        payload: Payload::Json(msg.payload),
    })
}

/// `{"event":E,"payload":P,"ref":R,"topic":T}`: keys in Jason's (sorted) order. Phoenix's
/// `V1.JSONSerializer` drops the `join_ref`, so a push and a broadcast look the same.
pub(super) fn encode(msg: &Outgoing<'_>, out: &mut Vec<u8>) -> Result<Encoded, EncodeError> {
    match *msg {
        Outgoing::Reply { join_ref: _, r#ref, topic, status, response } => {
            let response = json(response)?;
            write_object(out, event::PHX_REPLY, |out| write_reply(out, response, status.as_str()), r#ref, topic);
        }
        Outgoing::Push { join_ref: _, topic, event, body } | Outgoing::Broadcast { topic, event, body } => {
            let body = json(body)?;
            write_object(out, event, |out| out.extend_from_slice(body), None, topic);
        }
        Outgoing::ChannelEnded { join_ref, topic, end } => {
            write_object(out, end.event(), |out| out.extend_from_slice(end.payload()), join_ref, topic);
        }
    }
    Ok(Encoded::Text)
}

/// The JSON of a body: 1.0.0 frames are text, with no room for raw bytes.
fn json(body: Body<'_>) -> Result<&[u8], EncodeError> {
    match body {
        Body::Json(json) => Ok(json),
        Body::Binary(_) => Err(EncodeError::BinaryNeedsV2),
    }
}

fn write_object(
    out: &mut Vec<u8>,
    event: &str,
    write_payload: impl FnOnce(&mut Vec<u8>),
    r#ref: Option<&ClientRef>,
    topic: &str,
) {
    out.extend_from_slice(b"{\"event\":");
    write_str(out, event);
    out.extend_from_slice(b",\"payload\":");
    write_payload(out);
    out.extend_from_slice(b",\"ref\":");
    write_opt_ref(out, r#ref);
    out.extend_from_slice(b",\"topic\":");
    write_str(out, topic);
    out.push(b'}');
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
        assert_eq!(msg.r#ref, Some("5".into()));
        assert_eq!(msg.join_ref, Some("3".into()));
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
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"topic":1,"event":"e","payload":{},"ref":null}"#,
            br#"["1","1","room:lobby","echo",{}]"#,
            br#" ["t","e",{},"1"]"#,
        ] {
            assert!(matches!(decode(bad), Err(ProtocolError::MalformedMessage(_))), "{bad:?}");
        }
    }

    // The encodings below are frames of shared/vectors/phoenix_wire_frames.md.

    #[test]
    fn encodes_a_reply_without_its_join_ref() {
        assert_eq!(
            encoded(Outgoing::reply(Some(&"3".into()), Some(&"5".into()), "room:v1", Status::Ok, Body::Json(br#"{"hello":"v1"}"#))),
            r#"{"event":"phx_reply","payload":{"response":{"hello":"v1"},"status":"ok"},"ref":"5","topic":"room:v1"}"#
        );
    }

    #[test]
    fn encodes_a_push_with_a_null_ref() {
        assert_eq!(
            encoded(Outgoing::push(Some(&"3".into()), "room:v1", "presence_state", Body::Json(b"{}"))),
            r#"{"event":"presence_state","payload":{},"ref":null,"topic":"room:v1"}"#
        );
    }

    #[test]
    fn encodes_a_broadcast_with_a_null_ref() {
        assert_eq!(
            encoded(Outgoing::broadcast("room:v1", "shout", Body::Json(br#"{"msg":"v1 shout"}"#))),
            r#"{"event":"shout","payload":{"msg":"v1 shout"},"ref":null,"topic":"room:v1"}"#
        );
    }

    #[test]
    fn encodes_a_channel_end_with_the_join_ref_as_ref() {
        // phx_error carries Phoenix 1.8's payload (CONFORMANCE.md), phx_close `{}`.
        assert_eq!(
            encoded(Outgoing::channel_ended(Some(&"10".into()), "room:v1crash", Event::Error)),
            r#"{"event":"phx_error","payload":{"reason":"channel_crash"},"ref":"10","topic":"room:v1crash"}"#
        );
        assert_eq!(
            encoded(Outgoing::channel_ended(Some(&"15".into()), "room:v1stop", Event::Close)),
            r#"{"event":"phx_close","payload":{},"ref":"15","topic":"room:v1stop"}"#
        );
    }

    #[test]
    fn refuses_binary_bodies() {
        let data = Body::Binary(b"\x09\x08\x07");
        for msg in [
            Outgoing::reply(Some(&"3".into()), Some(&"14".into()), "room:v1", Status::Ok, data),
            Outgoing::push(Some(&"3".into()), "room:v1", "bin", data),
            Outgoing::broadcast("room:v1", "bin", data),
        ] {
            let mut out = Vec::new();
            assert_eq!(encode(&msg, &mut out), Err(EncodeError::BinaryNeedsV2), "{msg:?}");
            assert!(out.is_empty(), "nothing written for {msg:?}");
        }
    }

    #[test]
    fn refs_of_any_json_value_round_trip_exactly() {
        // Python's phxsocket: integer refs from 0, no join_ref.
        for r#ref in ["0", "41", r#""5""#, "null", "1.5", r#"{"id":[1]}"#] {
            let text = format!(r#"{{"event":"echo","topic":"room:py","ref":{ref},"payload":{{}}}}"#);
            let msg = decode(text.as_bytes()).unwrap();
            assert_eq!(msg.join_ref, None);
            let reply = Outgoing::reply(msg.join_ref.as_ref(), msg.r#ref.as_ref(), &msg.topic, Status::Ok, Body::Json(b"{}"));
            assert_eq!(
                encoded(reply),
                format!(r#"{{"event":"phx_reply","payload":{{"response":{{}},"status":"ok"}},"ref":{ref},"topic":"room:py"}}"#)
            );
        }
        let msg = decode(br#"{"event":"echo","topic":"t","ref":1,"join_ref":7,"payload":{}}"#).unwrap();
        let ended = Outgoing::channel_ended(msg.join_ref.as_ref(), "t", Event::Error);
        assert_eq!(encoded(ended), r#"{"event":"phx_error","payload":{"reason":"channel_crash"},"ref":7,"topic":"t"}"#);
    }
}
