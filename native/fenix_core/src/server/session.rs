//! A WebSocket session: the reader and the writer of one connection, in one task.
//!
//! The reader owns no buffer while the connection is idle: it waits for readability,
//! reads into a per-thread scratch buffer and parses frames in place; only the bytes
//! of an incomplete frame are kept, per connection, until the rest arrives. While the
//! connection is out of inbound credit (its channels have not handled what they were
//! given, see `credit.rs`), the reader stops between two messages, keeps what it has
//! not parsed (at most one read), and reads nothing more until credit is back: the
//! client's further bytes wait in the kernel, and TCP slows it down. Channels that give
//! nothing back for a whole idle timeout are stuck: the connection is closed (1011).
//! A frame must arrive whole within the frame timeout of its first byte (1008 else):
//! the idle timer restarts on every read, and alone would let a client hold a frame
//! buffer open by trickling bytes. Messages and joins a second are limited
//! (`rate.rs`): beyond either, 1008.
//!
//! The writer takes every frame queued in the outbox and writes them with one
//! vectored write. The session is generic over its [`Transport`]: plain TCP, or TLS
//! (`transport.rs`), whose writes are flushed before the writer waits for more.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::conn::Conn;
use super::outbox::Next;
use super::rate::Limits;
use super::transport::Transport;
use crate::error::{CapacityError, Error, ProtocolError};
use crate::websocket::frame::{self, Opcode};
use crate::websocket::{CloseCode, Frame, Reader};

/// Per-thread read buffer: one read takes at most this much.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Most frames handed to one `writev`.
const MAX_IOVECS: usize = 256;
/// Batches up to this size are copied into one per-thread buffer and written with one
/// `write`: the kernel copies one long run much faster than many short iovecs.
const COALESCE_LIMIT: usize = 64 * 1024;
/// The close reason when a connection's channels hold its credit for a whole idle timeout.
const STUCK_REASON: &str = "channels stopped handling messages";
/// The close reason when a frame does not arrive whole within the frame timeout.
const SLOW_FRAME_REASON: &str = "frame not finished in time";
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

pub(super) async fn run(mut stream: impl Transport, conn: Arc<Conn>, leftover: Vec<u8>) {
    // Finalizes even if a bug panics this task: the channels must hear that the connection is gone.
    let finalize = Finalize(&conn);
    let mut peer_gone = false;
    {
        let writer = write_loop(&stream, &conn);
        tokio::pin!(writer);
        tokio::select! {
            () = &mut writer => {}
            end = read_loop(&stream, &conn, leftover) => {
                match end {
                    ReadEnd::Close(code, reason) => conn.close(code, &reason),
                    ReadEnd::Gone => {
                        conn.outbox.abort();
                        peer_gone = true;
                    }
                }
                let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
            }
        }
    }
    drop(finalize);
    // A peer that reset or closed its side reads nothing more: dropping the stream
    // closes it, and a shutdown first would be one more system call (and a FIN or TLS
    // close_notify sent into a dead socket) for each of a wave of dying connections.
    if !peer_gone {
        stream.shutdown().await;
    }
}

struct Finalize<'a>(&'a Conn);

impl Drop for Finalize<'_> {
    fn drop(&mut self) {
        self.0.finalize();
    }
}

async fn write_loop(stream: &impl Transport, conn: &Conn) {
    let mut batch = Vec::new();
    loop {
        match conn.outbox.next(&mut batch).await {
            Next::Write => {
                let written = match write_all(stream, &batch, conn).await {
                    Ok(()) => flush(stream, conn).await,
                    failed => failed,
                };
                if let Err(error) = written {
                    if error.kind() == io::ErrorKind::TimedOut {
                        conn.close_stalled_reader();
                    } else {
                        tracing::debug!(conn = conn.id(), %error, "write failed");
                        conn.outbox.abort();
                    }
                    return;
                }
                batch.clear();
            }
            Next::Finished | Next::Abort => return,
        }
    }
}

async fn write_all(stream: &impl Transport, frames: &[Bytes], conn: &Conn) -> io::Result<()> {
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

/// Waits until what the transport took is on the wire: at once on TCP; TLS may hold
/// records the socket did not take yet, which nothing else would send while the
/// outbox is empty.
async fn flush(stream: &impl Transport, conn: &Conn) -> io::Result<()> {
    while !stream.try_flush()? {
        writable(stream, conn).await?;
    }
    Ok(())
}

/// Waits until the socket takes more: `TimedOut` when it took nothing for the
/// socket's `slow_reader_timeout` (only waits pay for the timer: a socket that takes
/// what it is given never waits).
async fn writable(stream: &impl Transport, conn: &Conn) -> io::Result<()> {
    tokio::select! {
        ready = tokio::time::timeout(conn.config().slow_reader_timeout, stream.writable()) => match ready {
            Ok(ready) => ready,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        },
        () = conn.outbox.aborted() => Err(io::ErrorKind::ConnectionAborted.into()),
    }
}

async fn write_vectored(stream: &impl Transport, frames: &[Bytes], conn: &Conn) -> io::Result<()> {
    let (mut index, mut offset) = (0, 0);
    while index < frames.len() {
        let written = {
            let slices: Vec<IoSlice<'_>> = std::iter::once(&frames[index][offset..])
                .chain(frames[index + 1..].iter().map(|f| &f[..]))
                .take(MAX_IOVECS)
                .map(IoSlice::new)
                .collect();
            // Tried first: the socket usually takes it, and then nothing waits.
            match stream.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    writable(stream, conn).await?;
                    continue;
                }
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

async fn read_loop(stream: &impl Transport, conn: &Arc<Conn>, leftover: Vec<u8>) -> ReadEnd {
    let config = conn.config();
    let (timeout, frame_timeout) = (config.timeout, config.frame_timeout);
    // One timer per connection, moved only when it fires: a read just notes the time,
    // so a busy connection costs no timer work per message. That time is also the
    // clock of the rate limits and the frame timeout: one clock read per read.
    let mut last_read = Instant::now();
    let limits = Limits::new(config, last_read);
    let reader = Reader::new(config.max_frame_size);
    let mut input = Input { reader, unparsed: leftover, partial_since: None, limits };
    let idle = tokio::time::sleep_until(last_read + timeout);
    tokio::pin!(idle);
    // The frame timer is polled only while a frame is partly in, and moved only when
    // another frame starts: whole frames per read cost no timer work.
    let frame_deadline = tokio::time::sleep_until(last_read + frame_timeout);
    tokio::pin!(frame_deadline);
    let mut armed_for: Option<Instant> = None;
    loop {
        // What is kept: frames left when credit ran out, or the start of a frame.
        if let Some(end) = input.parse_unparsed(last_read, conn) {
            return end;
        }
        if conn.is_out_of_credit() {
            // Channels that handle nothing for a whole idle timeout are stuck: the
            // connection goes (and its client reconnects) rather than wait for ever,
            // unable even to see that its client has gone.
            if tokio::time::timeout(timeout, conn.credit.restored(conn.credit_limits())).await.is_err() {
                tracing::warn!(conn = conn.id(), ?timeout, "closing a connection whose channels stopped handling its messages");
                return ReadEnd::Close(CloseCode::Internal, STUCK_REASON.to_owned());
            }
            // Not reading was our doing, not the client's silence or slowness.
            last_read = Instant::now();
            input.partial_since = None;
            continue;
        }
        let partial_deadline = input.partial_since.map(|since| since + frame_timeout);
        if let Some(deadline) = partial_deadline {
            if armed_for != Some(deadline) {
                frame_deadline.as_mut().reset(deadline);
                armed_for = Some(deadline);
            }
        }
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
            () = &mut frame_deadline, if partial_deadline.is_some() => {
                tracing::debug!(conn = conn.id(), ?frame_timeout, "closing a connection whose frame stalled");
                return ReadEnd::Close(CloseCode::Policy, SLOW_FRAME_REASON.to_owned());
            }
        }
        let end = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match stream.try_read(&mut scratch) {
                Ok(0) => Some(ReadEnd::Gone),
                Ok(n) => {
                    last_read = Instant::now();
                    input.feed(&mut scratch[..n], last_read, conn)
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

/// The reader's side of a connection: the frame reader and the bytes not parsed yet.
struct Input {
    reader: Reader,
    /// Bytes read but not parsed: the start of a frame whose end has not arrived, or
    /// the frames that follow the message that used up the connection's credit.
    unparsed: Vec<u8>,
    /// Since when the frame at the start of `unparsed` has been coming in.
    partial_since: Option<Instant>,
    limits: Limits,
}

impl Input {
    /// Handles freshly read bytes: parsed in place, and only what is left is kept.
    fn feed(&mut self, data: &mut [u8], now: Instant, conn: &Arc<Conn>) -> Option<ReadEnd> {
        if !self.unparsed.is_empty() {
            self.unparsed.extend_from_slice(data);
            return self.parse_unparsed(now, conn);
        }
        match parse(&mut self.reader, &mut self.limits, data, now, conn) {
            Ok(consumed) => {
                self.unparsed.extend_from_slice(&data[consumed..]);
                self.note_progress(consumed, now);
                None
            }
            Err(end) => Some(end),
        }
    }

    /// After a parse that took `consumed` bytes: a frame that completed starts the
    /// clock of the next one anew; no progress keeps the clock of the frame in.
    fn note_progress(&mut self, consumed: usize, now: Instant) {
        self.partial_since = match (self.unparsed.is_empty(), consumed > 0, self.partial_since) {
            (true, _, _) => None,
            (false, false, Some(since)) => Some(since),
            (false, _, _) => Some(now),
        };
    }

    fn parse_unparsed(&mut self, now: Instant, conn: &Arc<Conn>) -> Option<ReadEnd> {
        if self.unparsed.is_empty() {
            return None;
        }
        let mut buf = std::mem::take(&mut self.unparsed);
        match parse(&mut self.reader, &mut self.limits, &mut buf, now, conn) {
            Ok(consumed) => {
                buf.drain(..consumed);
                self.unparsed = buf;
                self.note_progress(consumed, now);
                None
            }
            Err(end) => Some(end),
        }
    }
}

/// Handles the complete frames at the start of `buf`, up to the message that uses up
/// the connection's credit; returns the bytes consumed.
/// Parses and dispatches the whole frames of `buf`, which arrived at `now` (the
/// messages of one read arrived together); returns how many bytes they took.
fn parse(reader: &mut Reader, limits: &mut Limits, buf: &mut [u8], now: Instant, conn: &Arc<Conn>) -> Result<usize, ReadEnd> {
    let mut pos = 0;
    while !conn.is_out_of_credit() {
        let read = match reader.read(&mut buf[pos..]) {
            Ok(Some(read)) => read,
            Ok(None) => break,
            Err(error) => return Err(close_for(conn, error)),
        };
        pos += read.consumed;
        match read.frame {
            None | Some(Frame::Pong) => {}
            Some(Frame::Ping(payload)) => {
                let _ = conn.send(frame::control(Opcode::Pong, payload));
            }
            Some(Frame::Close(payload)) => return Err(ReadEnd::Close(CloseCode::echo(payload), String::new())),
            Some(Frame::Text(text)) => dispatch(conn.serializer().decode_text(text), text.len(), limits, now, conn)?,
            Some(Frame::Binary(data)) => dispatch(conn.serializer().decode_binary(data), data.len(), limits, now, conn)?,
        }
    }
    Ok(pos)
}

fn dispatch(
    decoded: Result<crate::protocol::Message, ProtocolError>,
    size: usize,
    limits: &mut Limits,
    now: Instant,
    conn: &Arc<Conn>,
) -> Result<(), ReadEnd> {
    let message = decoded.map_err(|error| close_for(conn, error.into()))?;
    limits.check(&message, now).map_err(|error| close_for(conn, error.into()))?;
    conn.handle_message(message, size).map_err(|error| close_for(conn, error.into()))
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
        Error::Encode(_) => CloseCode::Internal,
    };
    ReadEnd::Close(code, error.to_string())
}
