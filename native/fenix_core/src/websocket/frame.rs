//! Frame headers: parsing client frames, writing server frames.

use bytes::Bytes;

use super::CloseCode;
use crate::error::ProtocolError;
use crate::protocol::Encoded;

/// The largest header a server frame needs (2 + 8 bytes; server frames are not masked).
pub const MAX_SERVER_HEADER: usize = 10;

/// A frame opcode (RFC6455§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continues a fragmented message.
    Continuation,
    /// A text message.
    Text,
    /// A binary message.
    Binary,
    /// Starts or answers the closing handshake.
    Close,
    /// Asks for a pong.
    Ping,
    /// Answers a ping.
    Pong,
}

impl Opcode {
    fn from_u8(byte: u8) -> Result<Opcode, ProtocolError> {
        Ok(match byte {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => return Err(ProtocolError::UnknownOpcode(other)),
        })
    }

    fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (RFC6455§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// The header of a client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Last frame of the message.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key (client frames are always masked).
    pub mask: [u8; 4],
    /// Length of the payload that follows the header.
    pub payload_len: usize,
}

impl Header {
    /// Parses a client frame header at the start of `buf`.
    ///
    /// `Ok(None)` means "need more bytes, nothing consumed"; `Ok(Some((header, n)))` gives
    /// the header and its length `n`; `Err` means "close the connection". Frames whose
    /// payload exceeds `max_payload` are refused from the header alone, before buffering.
    ///
    /// ```
    /// use fenix_core::websocket::{Header, Opcode};
    /// // A masked text frame of 5 bytes ("Hello", RFC6455§5.7).
    /// let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    /// let (header, len) = Header::parse(&frame, 1 << 20).unwrap().unwrap();
    /// assert_eq!((header.opcode, header.payload_len, len), (Opcode::Text, 5, 6));
    /// assert_eq!(Header::parse(&frame[..1], 1 << 20).unwrap(), None);
    /// ```
    pub fn parse(buf: &[u8], max_payload: usize) -> crate::Result<Option<(Header, usize)>> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::ReservedBits.into());
        }
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::from_u8(b0 & 0x0f)?;
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::UnmaskedFrame.into());
        }
        let (payload_len, mut pos) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(len) => (u64::from(u16::from_be_bytes([len[0], len[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(len) => (u64::from_be_bytes(len.try_into().expect("8 bytes")), 10),
                None => return Ok(None),
            },
            len => (u64::from(len), 2),
        };
        if opcode.is_control() && (!fin || payload_len > 125) {
            return Err(ProtocolError::InvalidControlFrame.into());
        }
        let payload_len = usize::try_from(payload_len).unwrap_or(usize::MAX);
        if payload_len > max_payload {
            return Err(crate::CapacityError::MessageTooLarge { size: payload_len, max: max_payload }.into());
        }
        let Some(mask) = buf.get(pos..pos + 4) else { return Ok(None) };
        let mask = mask.try_into().expect("4 bytes");
        pos += 4;
        Ok(Some((Header { fin, opcode, mask, payload_len }, pos)))
    }
}

/// Unmasks a client payload in place (RFC6455§5.3).
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Builds one unmasked server frame: `write` appends the payload, the header goes in front.
///
/// The payload is written once into a buffer that starts with room for the largest
/// header, so framing never copies the payload.
///
/// ```
/// use fenix_core::protocol::Encoded;
/// let frame = fenix_core::websocket::frame::encode(|out| {
///     out.extend_from_slice(b"hi");
///     Encoded::Text
/// });
/// assert_eq!(&frame[..], b"\x81\x02hi");
/// ```
pub fn encode(write: impl FnOnce(&mut Vec<u8>) -> Encoded) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    buf.resize(MAX_SERVER_HEADER, 0);
    let opcode = match write(&mut buf) {
        Encoded::Text => Opcode::Text,
        Encoded::Binary => Opcode::Binary,
    };
    finish(buf, opcode)
}

/// Like [`encode`] but the writer may fail; nothing is built then.
pub fn try_encode<E>(write: impl FnOnce(&mut Vec<u8>) -> Result<Encoded, E>) -> Result<Bytes, E> {
    let mut result = Ok(());
    let frame = encode(|out| match write(out) {
        Ok(kind) => kind,
        Err(e) => {
            result = Err(e);
            Encoded::Text
        }
    });
    result.map(|()| frame)
}

/// A control frame: close (with a code and reason) or pong.
pub fn control(opcode: Opcode, payload: &[u8]) -> Bytes {
    debug_assert!(opcode.is_control() && payload.len() <= 125);
    let mut buf = Vec::with_capacity(2 + payload.len());
    buf.push(0x80 | opcode.as_u8());
    buf.push(payload.len() as u8);
    buf.extend_from_slice(payload);
    Bytes::from(buf)
}

/// A close frame with `code` and a reason (truncated to fit in a control frame).
pub fn close(code: CloseCode, reason: &str) -> Bytes {
    let mut payload = code.as_u16().to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control(Opcode::Close, &payload)
}

/// The opcode and payload of a server frame built by [`encode`] or [`control`]: what a
/// transport without WebSocket framing (long-poll) sends instead of the frame. `None`
/// for bytes that are not one whole unmasked frame.
///
/// ```
/// use fenix_core::websocket::{frame, Opcode};
/// assert_eq!(frame::split_server_frame(b"\x81\x02hi"), Some((Opcode::Text, &b"hi"[..])));
/// assert_eq!(frame::split_server_frame(b"\x81\x05hi"), None);
/// ```
pub fn split_server_frame(frame: &[u8]) -> Option<(Opcode, &[u8])> {
    let [b0, b1, ..] = *frame else { return None };
    let opcode = Opcode::from_u8(b0 & 0x0f).ok()?;
    let (len, start) = match b1 & 0x7f {
        126 => (usize::from(u16::from_be_bytes(frame.get(2..4)?.try_into().ok()?)), 4),
        127 => (usize::try_from(u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?)).ok()?, 10),
        len => (usize::from(len), 2),
    };
    let payload = frame.get(start..)?;
    (b1 & 0x80 == 0 && payload.len() == len).then_some((opcode, payload))
}

fn finish(mut buf: Vec<u8>, opcode: Opcode) -> Bytes {
    let len = buf.len() - MAX_SERVER_HEADER;
    let mut header = [0u8; MAX_SERVER_HEADER];
    header[0] = 0x80 | opcode.as_u8();
    let header_len = if len < 126 {
        header[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    let start = MAX_SERVER_HEADER - header_len;
    buf[start..MAX_SERVER_HEADER].copy_from_slice(&header[..header_len]);
    Bytes::from(buf).slice(start..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_of(len: usize) -> Bytes {
        encode(|out| {
            out.resize(out.len() + len, b'x');
            Encoded::Binary
        })
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        assert_eq!(&payload_of(125)[..2], &[0x82, 125]);
        assert_eq!(&payload_of(126)[..4], &[0x82, 126, 0, 126]);
        assert_eq!(&payload_of(70_000)[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(payload_of(70_000).len(), 70_010);
    }

    #[test]
    fn splits_the_server_frames_it_builds() {
        for len in [0, 125, 126, 70_000] {
            let frame = payload_of(len);
            assert_eq!(split_server_frame(&frame).map(|(op, p)| (op, p.len())), Some((Opcode::Binary, len)));
        }
        let close = close(CloseCode::Normal, "bye");
        assert_eq!(split_server_frame(&close).map(|(op, _)| op), Some(Opcode::Close));
        assert_eq!(split_server_frame(&payload_of(200)[..100]), None, "cut short");
    }

    #[test]
    fn parses_extended_lengths_and_needs_more_bytes() {
        let mut frame = vec![0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4];
        assert_eq!(Header::parse(&frame[..3], 1 << 20).unwrap(), None);
        assert_eq!(Header::parse(&frame[..7], 1 << 20).unwrap(), None);
        let (header, len) = Header::parse(&frame, 1 << 20).unwrap().unwrap();
        assert_eq!((header.payload_len, len, header.mask), (256, 8, [1, 2, 3, 4]));
        frame[1] = 0xff;
        assert_eq!(Header::parse(&frame, 1 << 20).unwrap(), None);
    }

    #[test]
    fn rejects_protocol_violations() {
        let violations: [(&[u8], &str); 5] = [
            (&[0x81, 0x05], "unmasked"),
            (&[0xc1, 0x85], "reserved"),
            (&[0x83, 0x85], "opcode"),
            (&[0x09, 0x80], "fragmented ping"),
            (&[0x89, 0xfe, 0, 200], "long ping"),
        ];
        for (bytes, what) in violations {
            assert!(Header::parse(bytes, 1 << 20).is_err(), "{what}");
        }
    }

    #[test]
    fn refuses_oversize_frames_from_the_header() {
        let frame = [0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            Header::parse(&frame, 1 << 20),
            Err(crate::Error::Capacity(crate::CapacityError::MessageTooLarge { .. }))
        ));
    }

    #[test]
    fn unmask_is_its_own_inverse() {
        let mut data = b"Hello".to_vec();
        unmask(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        unmask(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(data, b"Hello");
    }
}
