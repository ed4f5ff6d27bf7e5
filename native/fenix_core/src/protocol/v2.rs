//! Serializer 2.0.0: text frames `[join_ref, ref, topic, event, payload]`, and binary
//! frames (written by [`binary`]) for binary payloads. `join_ref` and `ref` may be any
//! JSON value (see [`ClientRef`]).

use serde_json::Value;

use crate::error::{EncodeError, ProtocolError};

use super::binary;
use super::client_ref::{write_opt_ref, ClientRef};
use super::event::{self, Event};
use super::json::{write_reply, write_str};
use super::message::{Body, Encoded, Message, Outgoing, Payload};

const SHAPE: &str = "vsn 2.0.0: expected [join_ref, ref, topic, event, payload]";

pub(super) fn decode(text: &[u8]) -> Result<Message, ProtocolError> {
    let malformed = |detail: String| ProtocolError::MalformedMessage(format!("{SHAPE}: {detail}"));
    let fields: Vec<Value> = serde_json::from_slice(text).map_err(|e| malformed(e.to_string()))?;
    // Like Phoenix, extra trailing elements are ignored.
    let mut fields = fields.into_iter();
    let (Some(join_ref), Some(r#ref), Some(topic), Some(event), Some(payload)) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed("too few elements".into()));
    };
    Ok(Message {
        join_ref: ClientRef::from_value(join_ref),
        r#ref: ClientRef::from_value(r#ref),
        topic: string(topic).ok_or_else(|| malformed("topic".into()))?,
        event: Event::from_wire(string(event).ok_or_else(|| malformed("event".into()))?),
        payload: Payload::Json(payload),
    })
}

fn string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// A text frame `[join_ref, ref, topic, event, payload]` for a JSON body, a binary frame
/// (see [`binary`]) for a binary one, as Phoenix's `V2.JSONSerializer` does.
pub(super) fn encode(msg: &Outgoing<'_>, out: &mut Vec<u8>) -> Result<Encoded, EncodeError> {
    match *msg {
        Outgoing::Reply { join_ref, r#ref, topic, status, response } => match response {
            Body::Json(response) => Ok(write_array(out, join_ref, r#ref, topic, event::PHX_REPLY, |out| {
                write_reply(out, response, status.as_str())
            })),
            Body::Binary(response) => binary::encode_reply(out, join_ref, r#ref, topic, status, response),
        },
        Outgoing::Push { join_ref, topic, event, body } => match body {
            Body::Json(body) => Ok(write_array(out, join_ref, None, topic, event, |out| out.extend_from_slice(body))),
            Body::Binary(body) => binary::encode_push(out, join_ref, topic, event, body),
        },
        Outgoing::Broadcast { topic, event, body } => match body {
            Body::Json(body) => Ok(write_array(out, None, None, topic, event, |out| out.extend_from_slice(body))),
            Body::Binary(body) => binary::encode_broadcast(out, topic, event, body),
        },
        Outgoing::ChannelEnded { join_ref, topic, end } => {
            Ok(write_array(out, join_ref, join_ref, topic, end.event(), |out| out.extend_from_slice(end.payload())))
        }
    }
}

fn write_array(
    out: &mut Vec<u8>,
    join_ref: Option<&ClientRef>,
    r#ref: Option<&ClientRef>,
    topic: &str,
    event: &str,
    write_payload: impl FnOnce(&mut Vec<u8>),
) -> Encoded {
    out.push(b'[');
    write_opt_ref(out, join_ref);
    out.push(b',');
    write_opt_ref(out, r#ref);
    out.push(b',');
    write_str(out, topic);
    out.push(b',');
    write_str(out, event);
    out.push(b',');
    write_payload(out);
    out.push(b']');
    Encoded::Text
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
    fn decodes_the_frames_of_the_phoenix_client() {
        let msg = decode(br#"[null,"4","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!((msg.join_ref, msg.r#ref, msg.event), (None, Some("4".into()), Event::Heartbeat));
        let msg = decode(br#"["3","5","room:lobby","echo",{"hello":"world","n":1}]"#).unwrap();
        assert_eq!(msg.topic, "room:lobby");
        assert_eq!(msg.payload, Payload::Json(serde_json::json!({"hello": "world", "n": 1})));
    }

    #[test]
    fn ignores_trailing_elements() {
        assert!(decode(br#"["1","1","t","e",{},"extra"]"#).is_ok());
    }

    #[test]
    fn rejects_wrong_shapes() {
        for bad in [
            &b""[..],
            b"{",
            b"{}",
            b"[]",
            br#"["1","1","t","e"]"#,
            br#"["1","1",null,"e",{}]"#,
            br#"["1","1","t",{},{}]"#,
        ] {
            assert!(matches!(decode(bad), Err(ProtocolError::MalformedMessage(_))), "{bad:?}");
        }
    }

    // The encodings below are frames of shared/vectors/phoenix_wire_frames.md.

    #[test]
    fn encodes_a_reply() {
        assert_eq!(
            encoded(Outgoing::reply(
                Some(&"3".into()),
                Some(&"3".into()),
                "room:lobby",
                Status::Ok,
                Body::Json(br#"{"joined":"room:lobby","user_id":"u1"}"#)
            )),
            r#"["3","3","room:lobby","phx_reply",{"response":{"joined":"room:lobby","user_id":"u1"},"status":"ok"}]"#
        );
        assert_eq!(
            encoded(Outgoing::reply(
                None,
                Some(&"5".into()),
                "room:never",
                Status::Error,
                Body::Json(br#"{"reason":"unmatched topic"}"#)
            )),
            r#"[null,"5","room:never","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
        );
    }

    #[test]
    fn encodes_a_push() {
        assert_eq!(
            encoded(Outgoing::push(Some(&"3".into()), "room:lobby", "pushed", Body::Json(br#"{"only":"me"}"#))),
            r#"["3",null,"room:lobby","pushed",{"only":"me"}]"#
        );
    }

    #[test]
    fn encodes_a_broadcast() {
        assert_eq!(
            encoded(Outgoing::broadcast("room:lobby", "shout", Body::Json(br#"{"msg":"hi all"}"#))),
            r#"[null,null,"room:lobby","shout",{"msg":"hi all"}]"#
        );
    }

    #[test]
    fn encodes_a_channel_end_with_the_join_ref_in_both_slots() {
        // phx_error carries Phoenix 1.8's payload (CONFORMANCE.md), phx_close `{}`.
        assert_eq!(
            encoded(Outgoing::channel_ended(Some(&"18".into()), "room:crashy", Event::Error)),
            r#"["18","18","room:crashy","phx_error",{"reason":"channel_crash"}]"#
        );
        assert_eq!(
            encoded(Outgoing::channel_ended(Some(&"1".into()), "room:dup", Event::Close)),
            r#"["1","1","room:dup","phx_close",{}]"#
        );
    }

    #[test]
    fn sends_binary_bodies_as_binary_frames() {
        let mut out = Vec::new();
        let (join_ref, r#ref) = (ClientRef::from("3"), ClientRef::from("14"));
        let reply = Outgoing::reply(Some(&join_ref), Some(&r#ref), "room:lobby", Status::Ok, Body::Binary(b"\xfe\xff"));
        assert_eq!(encode(&reply, &mut out), Ok(Encoded::Binary));
        assert_eq!(out, b"\x01\x01\x02\x0a\x02314room:lobbyok\xfe\xff");
        out.clear();
        let push = Outgoing::push(Some(&join_ref), "room:lobby", "bin", Body::Binary(b"\xfe\xff"));
        assert_eq!(encode(&push, &mut out), Ok(Encoded::Binary));
        assert_eq!(out, b"\x00\x01\x0a\x033room:lobbybin\xfe\xff");
        out.clear();
        let shout = Outgoing::broadcast("room:lobby", "bin", Body::Binary(b"\x09\x08\x07"));
        assert_eq!(encode(&shout, &mut out), Ok(Encoded::Binary));
        assert_eq!(out, b"\x02\x0a\x03room:lobbybin\x09\x08\x07");
    }

    #[test]
    fn a_topic_too_long_for_a_binary_frame_is_an_encode_error() {
        let topic = "t".repeat(300);
        let shout = Outgoing::broadcast(&topic, "bin", Body::Binary(b"\x01"));
        assert_eq!(encode(&shout, &mut Vec::new()), Err(EncodeError::FieldTooLong { field: "topic", size: 300 }));
        // The same topic fits a text frame.
        let shout = Outgoing::broadcast(&topic, "shout", Body::Json(b"{}"));
        assert_eq!(encode(&shout, &mut Vec::new()), Ok(Encoded::Text));
    }

    #[test]
    fn round_trips_a_client_message() {
        let text = br#"["1",null,"room:a\"b","ev\\t",{"k":[1,2.5,null,true,"\u0001"]}]"#;
        let msg = decode(text).unwrap();
        let Payload::Json(payload) = &msg.payload else { panic!("a text frame has a JSON payload") };
        let body = serde_json::to_vec(payload).unwrap();
        let push = Outgoing::push(msg.join_ref.as_ref(), &msg.topic, msg.event.as_str(), Body::Json(&body));
        let mut bytes = Vec::new();
        encode(&push, &mut bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn refs_of_any_json_value_round_trip_exactly() {
        // join_ref and ref as the client sent them, and the reply that must carry them back.
        for (join_ref, r#ref) in [
            (r#""3""#, r#""5""#),
            ("3", "5"),
            ("null", "0"),
            ("null", "null"),
            ("-1", "18446744073709551615"),
            ("2.5", "true"),
            (r#""ü\"\\""#, r#"[1,"a",null]"#),
            (r#"{"a":{"b":[]}}"#, r#""""#),
        ] {
            let text = format!(r#"[{join_ref},{ref},"room:lobby","echo",{{}}]"#);
            let msg = decode(text.as_bytes()).unwrap();
            let reply = Outgoing::reply(msg.join_ref.as_ref(), msg.r#ref.as_ref(), &msg.topic, Status::Ok, Body::Json(b"{}"));
            assert_eq!(
                encoded(reply),
                format!(r#"[{join_ref},{ref},"room:lobby","phx_reply",{{"response":{{}},"status":"ok"}}]"#),
                "{text}"
            );
            let ended = Outgoing::channel_ended(msg.join_ref.as_ref(), &msg.topic, Event::Close);
            assert_eq!(encoded(ended), format!(r#"[{join_ref},{join_ref},"room:lobby","phx_close",{{}}]"#));
        }
    }

    #[test]
    fn refs_are_kept_as_values_in_canonical_form() {
        // Spacing, key order and escapes are not part of a value: the echo is the value's
        // canonical JSON, as Jason re-encodes what it decoded.
        let msg = decode(br#"[ { "b" : 1, "a" : 2 } , "\u0035" ,"t","e",{}]"#).unwrap();
        let reply = Outgoing::reply(msg.join_ref.as_ref(), msg.r#ref.as_ref(), "t", Status::Ok, Body::Json(b"{}"));
        assert_eq!(encoded(reply), r#"[{"a":2,"b":1},"5","t","phx_reply",{"response":{},"status":"ok"}]"#);
        assert_eq!(msg.r#ref, Some("5".into()));
    }
}
