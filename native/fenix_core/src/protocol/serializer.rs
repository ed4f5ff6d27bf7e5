//! The serializer of a connection, chosen once by its `vsn` connect parameter: the top
//! of `protocol`, dispatching to the codec of each version.

use crate::error::{EncodeError, ProtocolError};

use super::message::{Body, Encoded, Message, Outgoing};
use super::{binary, v1, v2};

/// The wire format of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// `vsn=1.0.0` (and the default when `vsn` is missing): JSON objects.
    V1,
    /// `vsn=2.0.0`: JSON arrays and binary frames.
    V2,
}

impl Serializer {
    /// Picks the serializer for the `vsn` connect parameter, as Phoenix does: its
    /// serializers answer `~> 1.0.0` and `~> 2.0.0`, so a missing vsn (`1.0.0`) or
    /// `1.0.x` is `V1`, `2.0.x` is `V2`, and anything else, another version or one that
    /// is not `major.minor.patch`, is refused.
    ///
    /// ```
    /// use fenix_core::protocol::Serializer;
    /// assert_eq!(Serializer::from_vsn(None), Some(Serializer::V1));
    /// assert_eq!(Serializer::from_vsn(Some("1.0.0")), Some(Serializer::V1));
    /// assert_eq!(Serializer::from_vsn(Some("2.0.0")), Some(Serializer::V2));
    /// assert_eq!(Serializer::from_vsn(Some("2.0.7")), Some(Serializer::V2));
    /// for refused in ["3.0.0", "2.1.0", "2.0", "2.0.0-rc.1", "2.0.x", ""] {
    ///     assert_eq!(Serializer::from_vsn(Some(refused)), None, "{refused}");
    /// }
    /// ```
    pub fn from_vsn(vsn: Option<&str>) -> Option<Serializer> {
        let Some(vsn) = vsn else { return Some(Serializer::V1) };
        let mut parts = vsn.split('.');
        let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
        let number = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if parts.next().is_some() || !number(patch) {
            return None;
        }
        match (major, minor) {
            ("1", "0") => Some(Serializer::V1),
            ("2", "0") => Some(Serializer::V2),
            _ => None,
        }
    }

    /// A dense index (`0..2`), for per-serializer caches of encoded broadcasts.
    ///
    /// ```
    /// use fenix_core::protocol::Serializer;
    /// // `ws://127.0.0.1:4100/socket/websocket?user_id=u1&vsn=2.0.0`, as the phoenix npm client connects.
    /// let mut cache: [Option<&[u8]>; 2] = [None, None];
    /// let v2 = Serializer::from_vsn(Some("2.0.0")).unwrap();
    /// cache[v2.index()] = Some(br#"[null,null,"room:lobby","shout",{"msg":"hi all"}]"#);
    /// assert!(cache[Serializer::V1.index()].is_none());
    /// ```
    pub fn index(self) -> usize {
        match self {
            Serializer::V1 => 0,
            Serializer::V2 => 1,
        }
    }

    /// Decodes a text frame.
    ///
    /// ```
    /// use fenix_core::protocol::{Event, Serializer};
    /// // A real join frame of the phoenix npm client (vsn 2.0.0).
    /// let msg = Serializer::V2
    ///     .decode_text(br#"["3","3","room:lobby","phx_join",{"track":true,"name":"Alice"}]"#)
    ///     .unwrap();
    /// assert_eq!(msg.event, Event::Join);
    /// assert_eq!(msg.join_ref, Some("3".into()));
    /// ```
    pub fn decode_text(self, text: &[u8]) -> Result<Message, ProtocolError> {
        match self {
            Serializer::V1 => v1::decode(text),
            Serializer::V2 => v2::decode(text),
        }
    }

    /// Decodes a binary frame (serializer 2.0.0 only: a 1.0.0 client may not send one).
    ///
    /// ```
    /// use fenix_core::protocol::{Payload, Serializer};
    /// // `bin` pushed by the phoenix npm client: kind 0, join_ref "3", ref "14", room:lobby.
    /// let frame = b"\x00\x01\x02\x0a\x03314room:lobbybin\x00\x01\x02\x03\xfe\xff";
    /// let msg = Serializer::V2.decode_binary(frame).unwrap();
    /// assert_eq!(msg.r#ref, Some("14".into()));
    /// assert_eq!(msg.payload, Payload::Binary(vec![0, 1, 2, 3, 0xfe, 0xff].into()));
    /// ```
    pub fn decode_binary(self, data: &[u8]) -> Result<Message, ProtocolError> {
        match self {
            Serializer::V1 => Err(ProtocolError::BinaryNotSupported),
            Serializer::V2 => binary::decode(data),
        }
    }

    /// Appends `msg` to `out` and says which frame kind carries it. A message the
    /// serializer cannot carry (a binary body for 1.0.0, a binary-frame header field
    /// over 255 bytes for 2.0.0) is an [`EncodeError`], and nothing is written then.
    ///
    /// ```
    /// use fenix_core::protocol::{Body, Encoded, Outgoing, Serializer, Status};
    /// use fenix_core::EncodeError;
    /// // The answer to the heartbeat `[null,"4","phoenix","heartbeat",{}]`, in both formats.
    /// let r#ref = "4".into();
    /// let reply = Outgoing::reply(None, Some(&r#ref), "phoenix", Status::Ok, Body::Json(b"{}"));
    /// let mut out = Vec::new();
    /// Serializer::V2.encode(&reply, &mut out).unwrap();
    /// assert_eq!(out, br#"[null,"4","phoenix","phx_reply",{"response":{},"status":"ok"}]"#);
    /// out.clear();
    /// Serializer::V1.encode(&reply, &mut out).unwrap();
    /// assert_eq!(
    ///     out,
    ///     br#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"4","topic":"phoenix"}"#
    /// );
    ///
    /// // `shout_bin`: a binary broadcast goes to 2.0.0 clients as a binary frame...
    /// let shout = Outgoing::broadcast("room:lobby", "bin", Body::Binary(b"\x09\x08\x07"));
    /// out.clear();
    /// assert_eq!(Serializer::V2.encode(&shout, &mut out), Ok(Encoded::Binary));
    /// assert_eq!(out, b"\x02\x0a\x03room:lobbybin\x09\x08\x07");
    /// // ...and cannot go to 1.0.0 clients at all.
    /// out.clear();
    /// assert_eq!(Serializer::V1.encode(&shout, &mut out), Err(EncodeError::BinaryNeedsV2));
    /// assert!(out.is_empty());
    /// ```
    pub fn encode(self, msg: &Outgoing<'_>, out: &mut Vec<u8>) -> Result<Encoded, EncodeError> {
        match self {
            Serializer::V1 => v1::encode(msg, out),
            Serializer::V2 => v2::encode(msg, out),
        }
    }

    /// Checks that a broadcast to `topic` of `event` with `body` can be encoded, without
    /// encoding it: a broadcast is encoded in the fan-out, once its caller has returned,
    /// so its caller learns here what it would break. Only a binary frame (2.0.0) has
    /// limits: header fields of at most 255 bytes. A binary body is no error for 1.0.0,
    /// whose subscribers just do not get it.
    ///
    /// ```
    /// use fenix_core::protocol::{Body, Serializer};
    /// use fenix_core::EncodeError;
    /// // `shout_bin` to room:lobby fits; to a topic of 300 bytes it does not.
    /// assert_eq!(Serializer::V2.check_broadcast("room:lobby", "bin", Body::Binary(b"\x09")), Ok(()));
    /// let topic = "room:".repeat(60);
    /// assert_eq!(
    ///     Serializer::V2.check_broadcast(&topic, "bin", Body::Binary(b"\x09")),
    ///     Err(EncodeError::FieldTooLong { field: "topic", size: 300 })
    /// );
    /// assert_eq!(Serializer::V2.check_broadcast(&topic, "shout", Body::Json(b"{}")), Ok(()));
    /// assert_eq!(Serializer::V1.check_broadcast(&topic, "bin", Body::Binary(b"\x09")), Ok(()));
    /// ```
    pub fn check_broadcast(self, topic: &str, event: &str, body: Body<'_>) -> Result<(), EncodeError> {
        match (self, body) {
            (Serializer::V2, Body::Binary(_)) => binary::check_broadcast(topic, event),
            _ => Ok(()),
        }
    }
}
