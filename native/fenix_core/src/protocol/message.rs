//! The message model shared by every serializer: what a client sends ([`Message`]),
//! what the server sends ([`Outgoing`]), and the kind of frame an encoded message
//! travels in ([`Encoded`]). A leaf: the serializers use it, it uses none of them.

use bytes::Bytes;

use super::client_ref::ClientRef;
use super::event::{self, Event, Status};

/// A message from a client, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The `join_ref` of the channel the message is for (`None` for heartbeats and v1 clients).
    pub join_ref: Option<ClientRef>,
    /// The client's reference for this message; replies carry it back.
    pub r#ref: Option<ClientRef>,
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

/// A message from the server: one variant per kind Phoenix sends, each with exactly
/// the slots that kind fills. Borrowed from its parts, so that encoding copies once.
///
/// Phoenix's model is the same: `%Reply{}`, `%Message{}` pushed by a channel, and
/// `%Broadcast{}` fast-laned to every subscriber (`Phoenix.Socket.V2.JSONSerializer`);
/// `phx_error` and `phx_close` are `%Message{}`s with the `join_ref` in both slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing<'a> {
    /// `phx_reply` to the client message `ref`; its payload is
    /// `{"response":<response>,"status":<status>}`.
    Reply {
        /// The `join_ref` of the channel that replies (`None` for heartbeats).
        join_ref: Option<&'a ClientRef>,
        /// The `ref` of the client message replied to.
        r#ref: Option<&'a ClientRef>,
        /// The topic.
        topic: &'a str,
        /// The reply's status.
        status: Status<'a>,
        /// The reply's response.
        response: Body<'a>,
    },
    /// An event pushed to one client's channel (`push/3`): `ref` is null.
    Push {
        /// The `join_ref` of the channel.
        join_ref: Option<&'a ClientRef>,
        /// The topic.
        topic: &'a str,
        /// The event name.
        event: &'a str,
        /// The payload.
        body: Body<'a>,
    },
    /// An event broadcast to every subscriber of a topic: `join_ref` and `ref` are null,
    /// so that the same bytes go to every subscriber of a serializer.
    Broadcast {
        /// The topic.
        topic: &'a str,
        /// The event name.
        event: &'a str,
        /// The payload.
        body: Body<'a>,
    },
    /// `phx_error` or `phx_close`: the channel of `join_ref` ended. Phoenix puts the
    /// `join_ref` in both the `join_ref` and the `ref` slot.
    ChannelEnded {
        /// The `join_ref` of the channel that ended.
        join_ref: Option<&'a ClientRef>,
        /// The topic.
        topic: &'a str,
        /// How it ended.
        end: ChannelEnd,
    },
}

/// How a channel ended, as its client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEnd {
    /// The channel crashed: `phx_error` with `{"reason":"channel_crash"}` (Phoenix 1.8).
    Crashed,
    /// The channel stopped, left, or was replaced by a new join: `phx_close` with `{}`.
    Closed,
}

impl ChannelEnd {
    /// The event that tells the client.
    pub(super) fn event(self) -> &'static str {
        match self {
            ChannelEnd::Crashed => event::PHX_ERROR,
            ChannelEnd::Closed => event::PHX_CLOSE,
        }
    }

    /// The payload of that event, as JSON: it never depends on the application.
    pub(super) fn payload(self) -> &'static [u8] {
        match self {
            ChannelEnd::Crashed => br#"{"reason":"channel_crash"}"#,
            ChannelEnd::Closed => b"{}",
        }
    }
}

impl<'a> Outgoing<'a> {
    /// A `phx_reply` to the client message `ref`.
    ///
    /// ```
    /// use fenix_core::protocol::{Body, ClientRef, Outgoing, Serializer, Status};
    /// // The answer to `["3","5","room:lobby","echo",{"hello":"world","n":1}]`, as Phoenix sends it.
    /// let (join_ref, r#ref) = (ClientRef::from("3"), ClientRef::from("5"));
    /// let response = Body::Json(br#"{"hello":"world","n":1}"#);
    /// let reply = Outgoing::reply(Some(&join_ref), Some(&r#ref), "room:lobby", Status::Ok, response);
    /// let mut out = Vec::new();
    /// Serializer::V2.encode(&reply, &mut out)?;
    /// assert_eq!(out, br#"["3","5","room:lobby","phx_reply",{"response":{"hello":"world","n":1},"status":"ok"}]"#);
    ///
    /// // The same push from a client whose refs are numbers gets numbers back.
    /// let push = Serializer::V2.decode_text(br#"[3,5,"room:lobby","echo",{"hello":"world","n":1}]"#).unwrap();
    /// let reply = Outgoing::reply(push.join_ref.as_ref(), push.r#ref.as_ref(), "room:lobby", Status::Ok, response);
    /// out.clear();
    /// Serializer::V2.encode(&reply, &mut out)?;
    /// assert_eq!(out, br#"[3,5,"room:lobby","phx_reply",{"response":{"hello":"world","n":1},"status":"ok"}]"#);
    /// # Ok::<(), fenix_core::EncodeError>(())
    /// ```
    pub fn reply(
        join_ref: Option<&'a ClientRef>,
        r#ref: Option<&'a ClientRef>,
        topic: &'a str,
        status: Status<'a>,
        response: Body<'a>,
    ) -> Self {
        Outgoing::Reply { join_ref, r#ref, topic, status, response }
    }

    /// A push to one client's channel (`ref` is null).
    ///
    /// ```
    /// use fenix_core::protocol::{Body, ClientRef, Outgoing, Serializer};
    /// // `push(socket, "pushed", %{only: "me"})` in a channel joined as "3", as Phoenix sends it.
    /// let join_ref = ClientRef::from("3");
    /// let push = Outgoing::push(Some(&join_ref), "room:lobby", "pushed", Body::Json(br#"{"only":"me"}"#));
    /// let mut out = Vec::new();
    /// Serializer::V2.encode(&push, &mut out)?;
    /// assert_eq!(out, br#"["3",null,"room:lobby","pushed",{"only":"me"}]"#);
    /// # Ok::<(), fenix_core::EncodeError>(())
    /// ```
    pub fn push(join_ref: Option<&'a ClientRef>, topic: &'a str, event: &'a str, body: Body<'a>) -> Self {
        Outgoing::Push { join_ref, topic, event, body }
    }

    /// A broadcast to every subscriber of a topic (`join_ref` and `ref` are null).
    ///
    /// ```
    /// use fenix_core::protocol::{Body, Outgoing, Serializer};
    /// // `broadcast!(socket, "shout", %{msg: "hi all"})`, as Phoenix sends it.
    /// let shout = Outgoing::broadcast("room:lobby", "shout", Body::Json(br#"{"msg":"hi all"}"#));
    /// let mut out = Vec::new();
    /// Serializer::V2.encode(&shout, &mut out)?;
    /// assert_eq!(out, br#"[null,null,"room:lobby","shout",{"msg":"hi all"}]"#);
    /// # Ok::<(), fenix_core::EncodeError>(())
    /// ```
    pub fn broadcast(topic: &'a str, event: &'a str, body: Body<'a>) -> Self {
        Outgoing::Broadcast { topic, event, body }
    }

    /// `phx_error` (`event` is [`Event::Error`]: the channel crashed) or `phx_close`
    /// ([`Event::Close`]: the channel closed) for the channel of `join_ref`. Any other
    /// event is a bug of the caller: it fails a debug assertion, and is taken as `Close`
    /// in release builds.
    ///
    /// ```
    /// use fenix_core::protocol::{ClientRef, Event, Outgoing, Serializer};
    /// // A duplicate join replaces the channel joined as "1", as Phoenix says it.
    /// let join_ref = ClientRef::from("1");
    /// let closed = Outgoing::channel_ended(Some(&join_ref), "room:dup", Event::Close);
    /// let mut out = Vec::new();
    /// Serializer::V2.encode(&closed, &mut out)?;
    /// assert_eq!(out, br#"["1","1","room:dup","phx_close",{}]"#);
    /// # Ok::<(), fenix_core::EncodeError>(())
    /// ```
    pub fn channel_ended(join_ref: Option<&'a ClientRef>, topic: &'a str, event: Event) -> Self {
        debug_assert!(matches!(event, Event::Error | Event::Close), "a channel ends with phx_error or phx_close");
        let end = if event == Event::Error { ChannelEnd::Crashed } else { ChannelEnd::Closed };
        Outgoing::ChannelEnded { join_ref, topic, end }
    }

    /// The topic the message is sent on, whatever its kind.
    ///
    /// ```
    /// use fenix_core::protocol::{Body, Outgoing};
    /// // `[null,null,"room:lobby","shout",{"msg":"hi all"}]`
    /// let shout = Outgoing::broadcast("room:lobby", "shout", Body::Json(br#"{"msg":"hi all"}"#));
    /// assert_eq!(shout.topic(), "room:lobby");
    /// ```
    pub fn topic(&self) -> &'a str {
        match *self {
            Outgoing::Reply { topic, .. }
            | Outgoing::Push { topic, .. }
            | Outgoing::Broadcast { topic, .. }
            | Outgoing::ChannelEnded { topic, .. } => topic,
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
