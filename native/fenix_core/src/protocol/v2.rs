//! Serializer 2.0.0, text frames: `[join_ref, ref, topic, event, payload]`.

use serde_json::Value;

use crate::error::{EncodeError, ProtocolError};

use super::json::{write_opt_str, write_reply, write_str};
use super::message::{Body, Encoded, Message, Outgoing, Payload};
use super::{binary, Event};

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
        join_ref: optional_string(join_ref).ok_or_else(|| malformed("join_ref".into()))?,
        r#ref: optional_string(r#ref).ok_or_else(|| malformed("ref".into()))?,
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

fn optional_string(value: Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s)),
        _ => None,
    }
}

pub(super) fn encode(msg: &Outgoing<'_>, out: &mut Vec<u8>) -> Result<Encoded, EncodeError> {
    let body = match msg.body {
        Body::Json(body) => body,
        Body::Binary(_) => return binary::encode(msg, out),
    };
    out.push(b'[');
    write_opt_str(out, msg.join_ref);
    out.push(b',');
    write_opt_str(out, msg.r#ref);
    out.push(b',');
    write_str(out, msg.topic);
    out.push(b',');
    write_str(out, msg.event);
    out.push(b',');
    match msg.status {
        None => out.extend_from_slice(body),
        Some(status) => write_reply(out, body, status.as_str()),
    }
    out.push(b']');
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
    fn decodes_the_frames_of_the_phoenix_client() {
        let msg = decode(br#"[null,"4","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!((msg.join_ref, msg.r#ref.as_deref(), msg.event), (None, Some("4"), Event::Heartbeat));
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
            br#"[1,"1","t","e",{}]"#,
            br#"["1",2,"t","e",{}]"#,
            br#"["1","1",null,"e",{}]"#,
            br#"["1","1","t",{},{}]"#,
        ] {
            assert!(matches!(decode(bad), Err(ProtocolError::MalformedMessage(_))), "{bad:?}");
        }
    }

    #[test]
    fn encodes_the_frames_phoenix_sends() {
        // from shared/vectors/phoenix_wire_frames.md
        assert_eq!(
            encoded(Outgoing::reply(
                Some("3"),
                Some("3"),
                "room:lobby",
                Status::Ok,
                Body::Json(br#"{"joined":"room:lobby","user_id":"u1"}"#)
            )),
            r#"["3","3","room:lobby","phx_reply",{"response":{"joined":"room:lobby","user_id":"u1"},"status":"ok"}]"#
        );
        assert_eq!(
            encoded(Outgoing::push(Some("3"), "room:lobby", "pushed", Body::Json(br#"{"only":"me"}"#))),
            r#"["3",null,"room:lobby","pushed",{"only":"me"}]"#
        );
        assert_eq!(
            encoded(Outgoing::broadcast("room:lobby", "shout", Body::Json(br#"{"msg":"hi all"}"#))),
            r#"[null,null,"room:lobby","shout",{"msg":"hi all"}]"#
        );
        assert_eq!(
            encoded(Outgoing::channel_ended(Some("18"), "room:crashy", Event::Error)),
            r#"["18","18","room:crashy","phx_error",{"reason":"channel_crash"}]"#
        );
        assert_eq!(
            encoded(Outgoing::reply(
                None,
                Some("5"),
                "room:never",
                Status::Error,
                Body::Json(br#"{"reason":"unmatched topic"}"#)
            )),
            r#"[null,"5","room:never","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
        );
    }

    #[test]
    fn round_trips_a_client_message() {
        let text = br#"["1","2","room:a\"b","ev\\t",{"k":[1,2.5,null,true,"\u0001"]}]"#;
        let msg = decode(text).unwrap();
        let Payload::Json(payload) = &msg.payload else { panic!() };
        let body = serde_json::to_vec(payload).unwrap();
        let out = Outgoing {
            join_ref: msg.join_ref.as_deref(),
            r#ref: msg.r#ref.as_deref(),
            topic: &msg.topic,
            event: msg.event.as_str(),
            status: None,
            body: Body::Json(&body),
        };
        let mut bytes = Vec::new();
        encode(&out, &mut bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), msg);
    }
}
