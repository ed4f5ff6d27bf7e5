//! Event names and reply statuses: the wire strings exist only here.

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
    /// use fenix_core::protocol::Event;
    /// assert_eq!(Event::Join.as_str(), "phx_join");
    /// assert_eq!(Event::Custom("shout".into()).as_str(), "shout");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Event::Custom(name) => name,
            protocol => protocol.as_str_static(),
        }
    }

    /// The wire name of a protocol event, with a static lifetime.
    pub(crate) fn as_str_static(&self) -> &'static str {
        match self {
            Event::Join => "phx_join",
            Event::Leave => "phx_leave",
            Event::Reply => "phx_reply",
            Event::Error => "phx_error",
            Event::Close => "phx_close",
            Event::Heartbeat => "heartbeat",
            Event::Custom(_) => unreachable!("custom events have no static name"),
        }
    }

    /// Reads an event name from the wire.
    ///
    /// ```
    /// use fenix_core::protocol::Event;
    /// assert_eq!(Event::from_wire("phx_leave".to_string()), Event::Leave);
    /// assert_eq!(Event::from_wire("echo".to_string()), Event::Custom("echo".into()));
    /// ```
    pub fn from_wire(name: String) -> Event {
        match name.as_str() {
            "phx_join" => Event::Join,
            "phx_leave" => Event::Leave,
            "phx_reply" => Event::Reply,
            "phx_error" => Event::Error,
            "phx_close" => Event::Close,
            "heartbeat" => Event::Heartbeat,
            _ => Event::Custom(name),
        }
    }
}

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
    /// Reads a status name.
    ///
    /// ```
    /// use fenix_core::protocol::Status;
    /// assert_eq!(Status::from_name("ok"), Status::Ok);
    /// assert_eq!(Status::from_name("noauth").as_str(), "noauth");
    /// ```
    pub fn from_name(name: &'a str) -> Status<'a> {
        match name {
            "ok" => Status::Ok,
            "error" => Status::Error,
            other => Status::Other(other),
        }
    }

    /// The status as it appears on the wire.
    pub fn as_str(self) -> &'a str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Other(name) => name,
        }
    }
}
