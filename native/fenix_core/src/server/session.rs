//! A WebSocket session: the reader and the writer of one connection, in one task.
//!
//! The reader owns no buffer while the connection is idle: it waits for readability,
//! reads into a per-thread scratch buffer and parses frames in place; only the bytes
//! of an incomplete frame are kept, per connection, until the rest arrives. The writer
//! takes every frame queued in the outbox and writes them with one vectored write.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::conn::Conn;
use super::outbox::Next;
use crate::error::{CapacityError, Error, ProtocolError};
use crate::websocket::frame::{self, unmask, Header, Opcode};
use crate::websocket::CloseCode;

/// Per-thread read buffer: one read takes at most this much.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Most frames handed to one `writev`.
const MAX_IOVECS: usize = 256;
/// Batches up to this size are copied into one per-thread buffer and written with one
/// `write`: the kernel copies one long run much faster than many short iovecs.
const COALESCE_LIMIT: usize = 64 * 1024;
/// How long a closing connection may take to flush what is queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
    static COALESCE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How the reader ended.
#[derive(Debug)]
enum ReadEnd {
    /// Close the connection with this code and reason.
    Close(CloseCode, String),
    /// The peer is gone (EOF, reset): nothing to say.
    Gone,
}

pub(super) async fn run(mut stream: TcpStream, conn: Arc<Conn>, leftover: Vec<u8>) {
    // Finalizes even if a bug panics this task: the channels must hear that the connection is gone.
    let finalize = Finalize(&conn);
    {
        let writer = write_loop(&stream, &conn);
        tokio::pin!(writer);
        tokio::select! {
            () = &mut writer => {}
            end = read_loop(&stream, &conn, leftover) => {
                match end {
                    ReadEnd::Close(code, reason) => conn.close(code, &reason),
                    ReadEnd::Gone => conn.outbox.abort(),
                }
                let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
            }
        }
    }
    drop(finalize);
    let _ = stream.shutdown().await;
}

struct Finalize<'a>(&'a Conn);

impl Drop for Finalize<'_> {
    fn drop(&mut self) {
        self.0.finalize();
    }
}

async fn write_loop(stream: &TcpStream, conn: &Conn) {
    let mut batch = Vec::new();
    loop {
        match conn.outbox.next(&mut batch).await {
            Next::Write => {
                if let Err(error) = write_all(stream, &batch, conn).await {
                    tracing::debug!(conn = conn.id(), %error, "write failed");
                    conn.outbox.abort();
                    return;
                }
                batch.clear();
            }
            Next::Finished | Next::Abort => return,
        }
    }
}

async fn write_all(stream: &TcpStream, frames: &[Bytes], conn: &Conn) -> io::Result<()> {
    let total: usize = frames.iter().map(Bytes::len).sum();
    if frames.len() == 1 || total > COALESCE_LIMIT {
        return write_vectored(stream, frames, conn).await;
    }
    // Write the whole batch now if the socket takes it (the common case); only what
    // it does not take is copied out of the per-thread buffer and waited for.
    let rest = COALESCE.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        frames.iter().for_each(|frame| buf.extend_from_slice(frame));
        let written = match stream.try_write(&buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        Ok((written < buf.len()).then(|| Bytes::copy_from_slice(&buf[written..])))
    })?;
    match rest {
        Some(rest) => write_vectored(stream, &[rest], conn).await,
        None => Ok(()),
    }
}

async fn write_vectored(stream: &TcpStream, frames: &[Bytes], conn: &Conn) -> io::Result<()> {
    let (mut index, mut offset) = (0, 0);
    while index < frames.len() {
        let written = {
            let slices: Vec<IoSlice<'_>> = std::iter::once(&frames[index][offset..])
                .chain(frames[index + 1..].iter().map(|f| &f[..]))
                .take(MAX_IOVECS)
                .map(IoSlice::new)
                .collect();
            tokio::select! {
                ready = stream.writable() => ready?,
                () = conn.outbox.aborted() => return Err(io::ErrorKind::ConnectionAborted.into()),
            }
            match stream.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        // Advance over the frames fully written.
        let mut left = written;
        while left > 0 {
            let remaining = frames[index].len() - offset;
            if left >= remaining {
                left -= remaining;
                index += 1;
                offset = 0;
            } else {
                offset += left;
                left = 0;
            }
        }
    }
    Ok(())
}

async fn read_loop(stream: &TcpStream, conn: &Arc<Conn>, leftover: Vec<u8>) -> ReadEnd {
    let timeout = conn.config().timeout;
    let mut reader = FrameReader::new(conn.config().max_frame_size);
    if !leftover.is_empty() {
        let mut leftover = leftover;
        if let Some(end) = reader.feed(&mut leftover, conn) {
            return end;
        }
    }
    // One timer per connection, moved only when it fires: a read just notes the time,
    // so a busy connection costs no timer work per message.
    let mut last_read = Instant::now();
    let idle = tokio::time::sleep_until(last_read + timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            ready = stream.readable() => {
                if ready.is_err() {
                    return ReadEnd::Gone;
                }
            }
            () = &mut idle => {
                let deadline = last_read + timeout;
                if Instant::now() >= deadline {
                    return ReadEnd::Close(CloseCode::Protocol, String::new());
                }
                idle.as_mut().reset(deadline);
                continue;
            }
        }
        let end = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match stream.try_read(&mut scratch) {
                Ok(0) => Some(ReadEnd::Gone),
                Ok(n) => {
                    last_read = Instant::now();
                    reader.feed(&mut scratch[..n], conn)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(_) => Some(ReadEnd::Gone),
            }
        });
        if let Some(end) = end {
            return end;
        }
    }
}

/// Turns bytes into frames, and frames into messages for the [`Conn`].
#[derive(Debug)]
struct FrameReader {
    max_message: usize,
    /// The start of a frame whose end has not arrived yet.
    partial: Vec<u8>,
    /// A fragmented message being assembled (RFC6455§5.4).
    fragments: Option<(Opcode, Vec<u8>)>,
}

impl FrameReader {
    fn new(max_message: usize) -> Self {
        FrameReader { max_message, partial: Vec::new(), fragments: None }
    }

    /// Handles freshly read bytes. `Some` ends the connection.
    fn feed(&mut self, data: &mut [u8], conn: &Arc<Conn>) -> Option<ReadEnd> {
        if self.partial.is_empty() {
            match self.parse(data, conn) {
                Ok(consumed) => self.partial.extend_from_slice(&data[consumed..]),
                Err(end) => return Some(end),
            }
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            match self.parse(&mut buf, conn) {
                Ok(consumed) => {
                    buf.drain(..consumed);
                    self.partial = buf;
                }
                Err(end) => return Some(end),
            }
        }
        None
    }

    /// Parses every complete frame at the start of `buf`; returns the bytes consumed.
    fn parse(&mut self, buf: &mut [u8], conn: &Arc<Conn>) -> Result<usize, ReadEnd> {
        let mut pos = 0;
        loop {
            let (header, header_len) = match Header::parse(&buf[pos..], self.max_message) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(pos),
                Err(error) => return Err(close_for(conn, error)),
            };
            let start = pos + header_len;
            if buf.len() - start < header.payload_len {
                return Ok(pos);
            }
            let payload = &mut buf[start..start + header.payload_len];
            unmask(payload, header.mask);
            self.handle_frame(header, payload, conn)?;
            pos = start + header.payload_len;
        }
    }

    fn handle_frame(&mut self, header: Header, payload: &[u8], conn: &Arc<Conn>) -> Result<(), ReadEnd> {
        match header.opcode {
            Opcode::Ping => {
                let _ = conn.send(frame::control(Opcode::Pong, payload));
                Ok(())
            }
            Opcode::Pong => Ok(()),
            Opcode::Close => Err(ReadEnd::Close(CloseCode::echo(payload), String::new())),
            Opcode::Text | Opcode::Binary if self.fragments.is_some() => {
                Err(close_for(conn, ProtocolError::UnexpectedContinuation.into()))
            }
            Opcode::Text | Opcode::Binary if header.fin => dispatch(header.opcode, payload, conn),
            Opcode::Text | Opcode::Binary => {
                self.fragments = Some((header.opcode, payload.to_vec()));
                Ok(())
            }
            Opcode::Continuation => {
                let Some((opcode, message)) = self.fragments.as_mut() else {
                    return Err(close_for(conn, ProtocolError::UnexpectedContinuation.into()));
                };
                if message.len() + payload.len() > self.max_message {
                    let size = message.len() + payload.len();
                    return Err(close_for(conn, CapacityError::MessageTooLarge { size, max: self.max_message }.into()));
                }
                message.extend_from_slice(payload);
                if header.fin {
                    let opcode = *opcode;
                    let (_, message) = self.fragments.take().expect("checked above");
                    dispatch(opcode, &message, conn)?;
                }
                Ok(())
            }
        }
    }
}

fn dispatch(opcode: Opcode, payload: &[u8], conn: &Arc<Conn>) -> Result<(), ReadEnd> {
    let decoded = match opcode {
        Opcode::Binary => conn.serializer().decode_binary(payload),
        _ => conn.serializer().decode_text(payload),
    };
    match decoded {
        Ok(message) => conn.handle_message(message).map_err(|error| close_for(conn, error.into())),
        Err(error) => Err(close_for(conn, error.into())),
    }
}

/// The close frame for an error of the peer, logged once here.
fn close_for(conn: &Conn, error: Error) -> ReadEnd {
    tracing::warn!(conn = conn.id(), %error, "closing connection");
    let code = match &error {
        Error::Capacity(CapacityError::MessageTooLarge { .. }) => CloseCode::TooBig,
        Error::Capacity(_) => CloseCode::Policy,
        Error::Protocol(ProtocolError::MalformedMessage(_) | ProtocolError::MalformedBinary(_)) => {
            CloseCode::InvalidPayload
        }
        Error::Protocol(ProtocolError::BinaryNotSupported) => CloseCode::InvalidPayload,
        Error::Protocol(_) => CloseCode::Protocol,
        Error::Closed | Error::Io(_) => CloseCode::Internal,
    };
    ReadEnd::Close(code, error.to_string())
}
