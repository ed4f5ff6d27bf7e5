//! The frame reader: client bytes in, WebSocket messages and control frames out.
//!
//! Pure: no I/O. The session hands it the bytes it read and pulls one [`Frame`] at a
//! time with [`Reader::read`], so it can stop between two messages (when the
//! connection is out of inbound credit) and keep the rest for later. Data frames are
//! unmasked in place in the caller's buffer; only a fragmented message (RFC6455§5.4)
//! is assembled in a buffer of the reader's own, bounded by the largest message.
//!
//! Contract of [`Reader::read`]:
//! - `Ok(None)`: the buffer does not hold a whole frame; nothing was consumed. Call
//!   again with more bytes appended.
//! - `Ok(Some(read))`: `read.consumed` bytes at the start of the buffer were one frame;
//!   `read.frame` is the message or control frame it completed, or `None` when it was a
//!   fragment of a message still being assembled.
//! - `Err(_)`: the peer broke the protocol or a limit; close the connection.
//!
//! Tested below, frame by frame, with literal bytes.

use crate::error::{CapacityError, Error, ProtocolError};

use super::frame::{unmask, Header, Opcode};

/// What a frame completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole text message (not yet checked for UTF-8: the serializer's JSON parser does).
    Text(&'a [u8]),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A ping, with its payload (to be echoed in the pong).
    Ping(&'a [u8]),
    /// A pong, with its payload.
    Pong(&'a [u8]),
    /// A close frame, with its payload (code and reason).
    Close(&'a [u8]),
}

/// One frame taken off the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Read<'a> {
    /// Bytes of the input the frame took.
    pub consumed: usize,
    /// What it completed, if anything.
    pub frame: Option<Frame<'a>>,
}

/// The reading side of one connection.
#[derive(Debug)]
pub struct Reader {
    max_message: usize,
    fragments: Fragments,
}

/// A fragmented message (RFC6455§5.4), in one field: every connection has a reader.
#[derive(Debug)]
enum Fragments {
    None,
    /// Being assembled: its opcode and bytes so far.
    Assembling(Opcode, Vec<u8>),
    /// Completed by the last frame, lent out until the next read.
    Complete(Opcode, Vec<u8>),
}

impl Reader {
    /// A reader that refuses messages (whole or assembled) over `max_message` bytes.
    pub fn new(max_message: usize) -> Reader {
        Reader { max_message, fragments: Fragments::None }
    }

    /// Takes the next frame off the start of `input`; see the module doc for the contract.
    ///
    /// ```
    /// use fenix_core::websocket::{Frame, Reader};
    /// // A masked text frame of the phoenix client: a heartbeat (vsn 2.0.0).
    /// let text = br#"[null,"1","phoenix","heartbeat",{}]"#;
    /// let mask = [1, 2, 3, 4];
    /// let mut input = vec![0x81, 0x80 | text.len() as u8, 1, 2, 3, 4];
    /// input.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    ///
    /// let mut reader = Reader::new(1 << 20);
    /// assert!(reader.read(&mut input[..10]).unwrap().is_none()); // need more bytes
    /// let read = reader.read(&mut input).unwrap().unwrap();
    /// assert_eq!(read.consumed, 6 + text.len());
    /// assert_eq!(read.frame, Some(Frame::Text(text)));
    /// ```
    pub fn read<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Option<Read<'a>>, Error> {
        if let Fragments::Complete(..) = self.fragments {
            self.fragments = Fragments::None;
        }
        let Some((header, header_len)) = Header::parse(input, self.max_message)? else {
            return Ok(None);
        };
        let consumed = header_len + header.payload_len;
        if input.len() < consumed {
            return Ok(None);
        }
        let payload = &mut input[header_len..consumed];
        unmask(payload, header.mask);
        let frame = self.frame(header.opcode, header.fin, payload)?;
        Ok(Some(Read { consumed, frame }))
    }

    fn frame<'a>(&'a mut self, opcode: Opcode, fin: bool, payload: &'a [u8]) -> Result<Option<Frame<'a>>, Error> {
        let data = |opcode, bytes| match opcode {
            Opcode::Binary => Frame::Binary(bytes),
            _ => Frame::Text(bytes),
        };
        match opcode {
            Opcode::Ping => Ok(Some(Frame::Ping(payload))),
            Opcode::Pong => Ok(Some(Frame::Pong(payload))),
            Opcode::Close => Ok(Some(Frame::Close(payload))),
            Opcode::Text | Opcode::Binary if matches!(self.fragments, Fragments::Assembling(..)) => {
                Err(ProtocolError::UnexpectedContinuation.into())
            }
            Opcode::Text | Opcode::Binary if fin => Ok(Some(data(opcode, payload))),
            Opcode::Text | Opcode::Binary => {
                self.fragments = Fragments::Assembling(opcode, payload.to_vec());
                Ok(None)
            }
            Opcode::Continuation => {
                let Fragments::Assembling(started, message) = &mut self.fragments else {
                    return Err(ProtocolError::UnexpectedContinuation.into());
                };
                let size = message.len() + payload.len();
                if size > self.max_message {
                    return Err(CapacityError::MessageTooLarge { size, max: self.max_message }.into());
                }
                message.extend_from_slice(payload);
                if !fin {
                    return Ok(None);
                }
                let (opcode, message) = (*started, std::mem::take(message));
                self.fragments = Fragments::Complete(opcode, message);
                match &self.fragments {
                    Fragments::Complete(opcode, message) => Ok(Some(data(*opcode, message))),
                    _ => Ok(None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame: FIN bit and opcode, then the payload length (< 126).
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![(u8::from(fin) << 7) | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        frame
    }

    fn frames(reader: &mut Reader, mut input: Vec<u8>) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(read) = reader.read(&mut input[pos..])? {
            pos += read.consumed;
            out.push(format!("{:?}", read.frame));
        }
        assert_eq!(pos, input.len(), "everything consumed");
        Ok(out)
    }

    #[test]
    fn a_frame_cut_anywhere_needs_more_bytes_and_consumes_nothing() {
        let frame = client_frame(true, 0x1, b"hello");
        for cut in 0..frame.len() {
            let mut part = frame[..cut].to_vec();
            assert_eq!(Reader::new(100).read(&mut part).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn unmasks_text_and_binary_messages() {
        let mut input = client_frame(true, 0x1, b"hi");
        input.extend(client_frame(true, 0x2, &[0, 0xff]));
        let got = frames(&mut Reader::new(100), input).unwrap();
        assert_eq!(got, [r#"Some(Text([104, 105]))"#, "Some(Binary([0, 255]))"]);
    }

    #[test]
    fn assembles_fragments_with_control_frames_in_between() {
        // RFC6455§5.4: control frames may be injected in the middle of a fragmented message.
        let mut input = client_frame(false, 0x1, b"he");
        input.extend(client_frame(true, 0x9, b"p"));
        input.extend(client_frame(false, 0x0, b"ll"));
        input.extend(client_frame(true, 0x0, b"o"));
        let got = frames(&mut Reader::new(100), input).unwrap();
        assert_eq!(got, ["None", "Some(Ping([112]))", "None", "Some(Text([104, 101, 108, 108, 111]))"]);
    }

    #[test]
    fn a_continuation_without_a_started_message_is_a_protocol_error() {
        let error = frames(&mut Reader::new(100), client_frame(true, 0x0, b"x")).unwrap_err();
        assert!(matches!(error, Error::Protocol(ProtocolError::UnexpectedContinuation)), "{error}");
    }

    #[test]
    fn a_new_message_inside_a_fragmented_one_is_a_protocol_error() {
        let mut input = client_frame(false, 0x1, b"a");
        input.extend(client_frame(true, 0x1, b"b"));
        let error = frames(&mut Reader::new(100), input).unwrap_err();
        assert!(matches!(error, Error::Protocol(ProtocolError::UnexpectedContinuation)), "{error}");
    }

    #[test]
    fn fragments_adding_up_past_the_limit_are_refused() {
        let mut input = client_frame(false, 0x1, &[b'a'; 6]);
        input.extend(client_frame(true, 0x0, &[b'a'; 6]));
        let error = frames(&mut Reader::new(10), input).unwrap_err();
        assert!(matches!(error, Error::Capacity(CapacityError::MessageTooLarge { size: 12, max: 10 })), "{error}");
    }

    #[test]
    fn passes_close_and_pong_frames_up() {
        let mut input = client_frame(true, 0xA, b"p");
        input.extend(client_frame(true, 0x8, &[0x03, 0xe8]));
        let got = frames(&mut Reader::new(100), input).unwrap();
        assert_eq!(got, ["Some(Pong([112]))", "Some(Close([3, 232]))"]);
    }
}
