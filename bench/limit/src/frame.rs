//! WebSocket framing (RFC 6455 §5.2), only what a server needs: parse masked client
//! frames in place, and build unmasked server frames once so that the same bytes can be
//! queued for every subscriber.

use bytes::{Buf, Bytes};

/// Opcodes (RFC 6455 §5.2).
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// Close codes (RFC 6455 §7.4.1).
pub const NORMAL: u16 = 1000;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const UNSUPPORTED_DATA: u16 = 1003;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const TOO_BIG: u16 = 1009;

/// Room left in front of a payload for the longest server frame header.
const HEADER_ROOM: usize = 10;

/// A frame being written: reserve the header room, append the payload, then [`finish`](Self::finish).
#[derive(Debug)]
pub struct FrameBuf(Vec<u8>);

impl FrameBuf {
    pub fn with_capacity(payload: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_ROOM + payload);
        buf.resize(HEADER_ROOM, 0);
        FrameBuf(buf)
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// The payload written so far is the JSON output target.
    pub fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Writes the header in front of the payload: a FIN frame, unmasked (servers do not mask).
    pub fn finish(mut self, opcode: u8) -> Bytes {
        let len = self.0.len() - HEADER_ROOM;
        let start = match len {
            0..=125 => {
                self.0[HEADER_ROOM - 1] = len as u8;
                HEADER_ROOM - 2
            }
            126..=0xFFFF => {
                self.0[HEADER_ROOM - 3] = 126;
                self.0[HEADER_ROOM - 2..HEADER_ROOM].copy_from_slice(&(len as u16).to_be_bytes());
                HEADER_ROOM - 4
            }
            _ => {
                self.0[HEADER_ROOM - 9] = 127;
                self.0[HEADER_ROOM - 8..HEADER_ROOM].copy_from_slice(&(len as u64).to_be_bytes());
                HEADER_ROOM - 10
            }
        };
        self.0[start] = 0x80 | opcode;
        let mut frame = Bytes::from(self.0);
        frame.advance(start); // no copy: the frame starts at the header
        frame
    }
}

/// A close frame with a code and no reason.
pub fn close(code: u16) -> Bytes {
    let [hi, lo] = code.to_be_bytes();
    Bytes::copy_from_slice(&[0x80 | CLOSE, 2, hi, lo])
}

/// A pong answering a ping's payload (at most 125 bytes, checked by [`parse`]).
pub fn pong(payload: &[u8]) -> Bytes {
    let mut frame = FrameBuf::with_capacity(payload.len());
    frame.extend(payload);
    frame.finish(PONG)
}

/// A client frame parsed from the start of a buffer.
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    /// Where the (already unmasked) payload lies in the buffer.
    pub payload: std::ops::Range<usize>,
}

/// Parses one client frame at the start of `buf` and unmasks its payload in place.
///
/// `Ok(None)`: the frame is not complete yet, nothing was touched. `Err(code)`: close
/// the connection with that code.
pub fn parse(buf: &mut [u8], max_payload: usize) -> Result<Option<Frame>, u16> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
        return Err(PROTOCOL_ERROR); // reserved bits set (§5.2) or an unmasked client frame (§5.1)
    }
    let (len, mut pos) = match b1 & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10),
        126 | 127 => return Ok(None),
        short => (short as u64, 2),
    };
    let control = opcode & 0x8 != 0;
    if control && (!fin || len > 125) {
        return Err(PROTOCOL_ERROR); // control frames are short and unfragmented (§5.5)
    }
    if len > max_payload as u64 {
        return Err(TOO_BIG);
    }
    let len = len as usize;
    if buf.len() < pos + 4 + len {
        return Ok(None);
    }
    let mask: [u8; 4] = buf[pos..pos + 4].try_into().expect("4 bytes");
    pos += 4;
    unmask(&mut buf[pos..pos + len], mask);
    Ok(Some(Frame { fin, opcode, payload: pos..pos + len }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3]; // the remainder starts at a multiple of 8, so of 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_have_the_shortest_header() {
        for (len, header) in [(5, vec![0x81, 5]), (126, vec![0x81, 126, 0, 126]), (70_000, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70])] {
            let mut frame = FrameBuf::with_capacity(len);
            frame.extend(&vec![b'x'; len]);
            let bytes = frame.finish(TEXT);
            assert_eq!(&bytes[..header.len()], &header[..]);
            assert_eq!(bytes.len(), header.len() + len);
        }
    }

    #[test]
    fn parses_and_unmasks_a_client_frame() {
        // "Hello" masked with 37 fa 21 3d (RFC 6455 §5.7), then the start of the next frame.
        let mut buf = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0x81];
        assert!(parse(&mut buf[..10], 1024).unwrap().is_none());
        let frame = parse(&mut buf, 1024).unwrap().unwrap();
        assert!(frame.fin && frame.opcode == TEXT);
        assert_eq!(&buf[frame.payload.clone()], b"Hello");
        assert_eq!(frame.payload.end, 11);
        assert_eq!(parse(&mut [0x81, 0x05, 0, 0, 0, 0, 0], 1024).unwrap_err(), PROTOCOL_ERROR);
    }

    #[test]
    fn unmasks_long_payloads() {
        let mask = [1, 2, 3, 4];
        let plain: Vec<u8> = (0..37).collect();
        let mut masked: Vec<u8> = plain.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        unmask(&mut masked, mask);
        assert_eq!(masked, plain);
    }
}
