//! The message model shared by every serializer: what a client sends ([`Message`]),
//! what the server sends ([`Outgoing`]), and the kind of frame an encoded message
//! travels in ([`Encoded`]). A leaf: the serializers use it, it uses none of them.

use bytes::Bytes;

use super::event::{self, Event, Status};

/// A message from a client, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The `join_ref` of the channel the message is for (`None` for heartbeats and v1 clients).
    pub join_ref: Option<String>,
    /// The client's reference for this message; replies carry it back.
    pub r#ref: Option<String>,
    /// The topic, e.g. `"room:lobby"`.
    pub topic: String,
    /// The event.
    pub event: Event,
    /// The payload.
    pub payload: Payload,
}

/// The payload of a client message.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A JSON value (text frames).
    Json(serde_json::Value),
    /// Raw bytes (binary frames, serializer 2.0.0).
    Binary(Bytes),
}

/// The payload of a server message, already encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// JSON text.
    Json(&'a [u8]),
    /// Raw bytes, sent as a binary frame.
    Binary(&'a [u8]),
}

/// A message from the server, borrowed from its parts so that encoding copies once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The `join_ref` slot.
    pub join_ref: Option<&'a str>,
    /// The `ref` slot.
    pub r#ref: Option<&'a str>,
    /// The topic.
    pub topic: &'a str,
    /// The event name.
    pub event: &'a str,
    /// `Some` for a `phx_reply`: the payload is then the reply's response.
    pub status: Option<Status<'a>>,
    /// The payload (for a reply, its response).
    pub body: Body<'a>,
}

const EMPTY_OBJECT: &[u8] = b"{}";
/// The payload of `phx_error` since Phoenix 1.8.
const CHANNEL_CRASH: &[u8] = br#"{"reason":"channel_crash"}"#;

impl<'a> Outgoing<'a> {
    /// A `phx_reply` to the client message `ref`.
    pub fn reply(
        join_ref: Option<&'a str>,
        r#ref: Option<&'a str>,
        topic: &'a str,
        status: Status<'a>,
        response: Body<'a>,
    ) -> Self {
        Outgoing { join_ref, r#ref, topic, event: event::PHX_REPLY, status: Some(status), body: response }
    }

    /// A push to one client's channel (`ref` is null).
    pub fn push(join_ref: Option<&'a str>, topic: &'a str, event: &'a str, body: Body<'a>) -> Self {
        Outgoing { join_ref, r#ref: None, topic, event, status: None, body }
    }

    /// A broadcast to every subscriber of a topic (`join_ref` and `ref` are null).
    pub fn broadcast(topic: &'a str, event: &'a str, body: Body<'a>) -> Self {
        Outgoing { join_ref: None, r#ref: None, topic, event, status: None, body }
    }

    /// `phx_error` or `phx_close` for a channel: Phoenix puts the `join_ref` in both slots.
    /// `phx_error` carries `{"reason":"channel_crash"}` (Phoenix 1.8), `phx_close` `{}`.
    pub fn channel_ended(join_ref: Option<&'a str>, topic: &'a str, event: Event) -> Self {
        debug_assert!(matches!(event, Event::Error | Event::Close));
        Outgoing {
            join_ref,
            r#ref: join_ref,
            topic,
            event: if event == Event::Error { event::PHX_ERROR } else { event::PHX_CLOSE },
            status: None,
            body: Body::Json(if event == Event::Error { CHANNEL_CRASH } else { EMPTY_OBJECT }),
        }
    }
}

/// What kind of WebSocket frame an encoded message must be sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// A text frame.
    Text,
    /// A binary frame.
    Binary,
}
