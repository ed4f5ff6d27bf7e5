//! Errors of the engine, by category.

use thiserror::Error;

/// Any error of the engine.
#[derive(Debug, Error)]
pub enum Error {
    /// The peer broke the WebSocket or channel protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A message of ours cannot be encoded for the connection's serializer.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A bounded resource is exhausted.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// The connection is closed; nothing more can be sent on it.
    #[error("connection closed")]
    Closed,
    /// An I/O error of the socket.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The peer sent something the protocol does not allow.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A text frame is not a channel message of the connection's serializer.
    #[error("malformed channel message: {0}")]
    MalformedMessage(String),
    /// A binary frame is not a well-formed binary channel message (serializer 2.0.0).
    #[error("malformed binary message: {0}")]
    MalformedBinary(&'static str),
    /// A binary frame from a client of serializer 1.0.0, which has none.
    #[error("binary frames need vsn 2.0.0")]
    BinaryNotSupported,
    /// Client frames must be masked (RFC6455§5.1).
    #[error("unmasked client frame (RFC6455§5.1)")]
    UnmaskedFrame,
    /// Reserved bits set without a negotiated extension (RFC6455§5.2).
    #[error("reserved bits set (RFC6455§5.2)")]
    ReservedBits,
    /// An opcode that RFC 6455 does not define (RFC6455§5.2).
    #[error("unknown opcode {0} (RFC6455§5.2)")]
    UnknownOpcode(u8),
    /// Control frames may not be fragmented nor exceed 125 bytes (RFC6455§5.5).
    #[error("invalid control frame (RFC6455§5.5)")]
    InvalidControlFrame,
    /// A continuation frame without a started message, or a new message inside one (RFC6455§5.4).
    #[error("unexpected continuation state (RFC6455§5.4)")]
    UnexpectedContinuation,
}

/// A message of the server that the connection's serializer cannot carry: a fault of
/// what we send, not of the peer, so only that message is dropped.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    /// A binary body for a client of serializer 1.0.0, whose frames are JSON text.
    #[error("binary payloads need vsn 2.0.0")]
    BinaryNeedsV2,
    /// A header field of a 2.0.0 binary frame (topic, event, status, join_ref or ref)
    /// is longer than the 255 bytes its one-byte length can say.
    #[error("{field} of {size} bytes does not fit a binary frame (at most 255 bytes)")]
    FieldTooLong {
        /// Which field: `"topic"`, `"event"`, `"status"`, `"join_ref"` or `"ref"`.
        field: &'static str,
        /// Its length in bytes.
        size: usize,
    },
    /// A client's `join_ref` or `ref` that is a JSON array or object, which a 2.0.0
    /// binary frame cannot carry: its header fields are strings (Phoenix's `to_string/1`
    /// raises for these too).
    #[error("{field} is a JSON array or object: a binary frame carries only strings and numbers there")]
    RefNotBinary {
        /// Which field: `"join_ref"` or `"ref"`.
        field: &'static str,
    },
}

/// A bounded resource is full.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CapacityError {
    /// A message exceeds `max_frame_size`.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The size announced or reached.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// More messages for a topic than may be held while its join is answered.
    #[error("more than {0} messages sent before their join was answered")]
    HeldMessages(usize),
    /// The connection's outbound queue is full: the client does not read.
    #[error("outbound queue full ({0} frames): slow reader")]
    OutboxFull(usize),
    /// The client sent more messages a second than `max_messages_per_second`.
    #[error("more than {0} messages a second")]
    TooManyMessages(usize),
    /// The client sent more joins a second than `max_joins_per_second`.
    #[error("more than {0} joins a second")]
    TooManyJoins(usize),
}

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
