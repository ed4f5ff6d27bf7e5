//! Event names and reply statuses: the wire strings exist only here.

/// `phx_join`.
const PHX_JOIN: &str = "phx_join";
/// `phx_leave`.
const PHX_LEAVE: &str = "phx_leave";
/// `phx_reply`: the event of every reply, which the encoders write without an [`Event`].
pub(super) const PHX_REPLY: &str = "phx_reply";
/// `phx_error`: sent when a channel crashed.
pub(super) const PHX_ERROR: &str = "phx_error";
/// `phx_close`: sent when a channel closed.
pub(super) const PHX_CLOSE: &str = "phx_close";
/// `heartbeat`.
const HEARTBEAT: &str = "heartbeat";

/// A channel event. Protocol events are variants; application events are `Custom`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// `phx_join`: join a topic.
    Join,
    /// `phx_leave`: leave a topic.
    Leave,
    /// `phx_reply`: the answer to a client message.
    Reply,
    /// `phx_error`: the channel crashed.
    Error,
    /// `phx_close`: the channel closed.
    Close,
    /// `heartbeat` (on topic `phoenix`).
    Heartbeat,
    /// Any other event, named by the application.
    Custom(String),
}

impl Event {
    /// The event as it appears on the wire.
    ///
    /// ```
    /// use fenix_core::protocol::{Event, Serializer};
    /// // The join of the phoenix npm client (vsn 2.0.0), and a push of an application event.
    /// let join = br#"["3","3","room:lobby","phx_join",{"track":true,"name":"Alice"}]"#;
    /// let join = Serializer::V2.decode_text(join).unwrap();
    /// assert_eq!(join.event.as_str(), "phx_join");
    /// let shout = Serializer::V2.decode_text(br#"["3","7","room:lobby","shout",{"msg":"hi all"}]"#).unwrap();
    /// assert_eq!(shout.event.as_str(), "shout");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Event::Join => PHX_JOIN,
            Event::Leave => PHX_LEAVE,
            Event::Reply => PHX_REPLY,
            Event::Error => PHX_ERROR,
            Event::Close => PHX_CLOSE,
            Event::Heartbeat => HEARTBEAT,
            Event::Custom(name) => name,
        }
    }

    /// Reads an event name from the wire.
    ///
    /// ```
    /// use fenix_core::protocol::Event;
    /// // The events of `[null,"4","phoenix","heartbeat",{}]`, `["3","4","room:lobby","phx_leave",{}]`
    /// // and `["3","5","room:lobby","echo",{"hello":"world","n":1}]`, sent by the phoenix npm client.
    /// assert_eq!(Event::from_wire("heartbeat".to_string()), Event::Heartbeat);
    /// assert_eq!(Event::from_wire("phx_leave".to_string()), Event::Leave);
    /// assert_eq!(Event::from_wire("echo".to_string()), Event::Custom("echo".into()));
    /// ```
    pub fn from_wire(name: String) -> Event {
        match name.as_str() {
            PHX_JOIN => Event::Join,
            PHX_LEAVE => Event::Leave,
            PHX_REPLY => Event::Reply,
            PHX_ERROR => Event::Error,
            PHX_CLOSE => Event::Close,
            HEARTBEAT => Event::Heartbeat,
            _ => Event::Custom(name),
        }
    }
}

/// `"ok"`.
const OK: &str = "ok";
/// `"error"`.
const ERROR: &str = "error";

/// The status of a `phx_reply`: `ok` and `error`, or any other name an application
/// replies with (`{:reply, {:unauthorized, payload}, socket}` in Elixir).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<'a> {
    /// `"ok"`
    Ok,
    /// `"error"`
    Error,
    /// Any other status.
    Other(&'a str),
}

impl<'a> Status<'a> {
    /// Reads a status name (an atom's name, given by the application).
    ///
    /// ```
    /// use fenix_core::protocol::Status;
    /// assert_eq!(Status::from_name("ok"), Status::Ok);
    /// assert_eq!(Status::from_name("noauth").as_str(), "noauth");
    /// ```
    pub fn from_name(name: &'a str) -> Status<'a> {
        match name {
            OK => Status::Ok,
            ERROR => Status::Error,
            other => Status::Other(other),
        }
    }

    /// The status as it appears on the wire.
    ///
    /// ```
    /// use fenix_core::protocol::{Body, Outgoing, Serializer, Status};
    /// // The answer to the heartbeat `[null,"4","phoenix","heartbeat",{}]`, as Phoenix sends it.
    /// assert_eq!(Status::Ok.as_str(), "ok");
    /// let mut out = Vec::new();
    /// let r#ref = "4".into();
    /// Serializer::V2.encode(&Outgoing::reply(None, Some(&r#ref), "phoenix", Status::Ok, Body::Json(b"{}")), &mut out)?;
    /// assert_eq!(out, br#"[null,"4","phoenix","phx_reply",{"response":{},"status":"ok"}]"#);
    /// # Ok::<(), fenix_core::EncodeError>(())
    /// ```
    pub fn as_str(self) -> &'a str {
        match self {
            Status::Ok => OK,
            Status::Error => ERROR,
            Status::Other(name) => name,
        }
    }
}
