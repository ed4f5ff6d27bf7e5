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
//! What the reader does with a whole message is picked once, when the session starts
//! ([`Inbound`]): a channel connection decodes it and runs it through the channel rules
//! (`conn.rs`); a raw one (`raw.rs`) checks that text is UTF-8 and hands it to its
//! transport. Frames, credit, limits and timers are the same code for both.
//!
//! The writer takes every frame queued in the outbox and writes them with one
//! vectored write. The session is generic over its [`Transport`]: plain TCP, or TLS
//! (`transport.rs`), whose writes are flushed before the writer waits for more.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::conn::Conn;
use super::outbox::Next;
use super::connections::Tracked;
use super::rate::{self, Limits, RateLimit};
use super::reaper::Dying;
use super::raw::Peer;
use super::transport::Transport;
use crate::error::{CapacityError, Error, ProtocolError};
use crate::sink::{ControlKind, DataKind, TransportClosed, TransportEvent};
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
    /// Close the connection with this code and reason; the transport of a raw
    /// connection is told why.
    Close(CloseCode, String, TransportClosed),
    /// The peer is gone (EOF, reset): nothing to say.
    Gone,
}

impl ReadEnd {
    /// The server closes the connection because of an error: the transport is told the code.
    fn error(code: CloseCode, reason: String) -> ReadEnd {
        ReadEnd::Close(code, reason, TransportClosed::Error(code))
    }
}

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteEnd {
    /// Everything up to the close frame was written.
    Finished,
    /// Dropped without writing: the client did not read (its outbox filled).
    Aborted,
    /// A write failed: the client is gone.
    Failed,
}

/// Runs the connection until it ends; `tracked` keeps it counted by the limits until
/// its socket is closed. A session that starts on the intake runtime (see `mod.rs`)
/// moves to the main one once it is [`Config::young_for`] old or has been sent
/// [`PROMOTE_FRAMES`] or [`PROMOTE_BYTES`], whichever comes first.
pub(super) async fn run<T: Transport>(stream: T, conn: Arc<Conn>, leftover: Vec<u8>, tracked: Tracked) {
    let now = Instant::now();
    let config = conn.config();
    let messages = config.max_messages_per_second.map(|rate| RateLimit::new(rate, now));
    let reader = Reader::new(config.max_frame_size);
    // Picked once: neither kind tests for the other per message.
    match conn.transport_peer() {
        None => {
            let inbound = Channels { limits: Limits::new(config, now) };
            start(stream, conn, Input::new(reader, leftover, inbound, now), tracked).await;
        }
        Some(peer) => start(stream, conn, Input::new(reader, leftover, Raw { peer, messages }, now), tracked).await,
    }
}

async fn start<T: Transport, I: Inbound + Send + 'static>(stream: T, conn: Arc<Conn>, input: Input<I>, tracked: Tracked) {
    let Some(main) = conn.shared.main.clone() else {
        serve(stream, conn, input, Vec::new(), tracked, None).await;
        return;
    };
    let young = Young { until: Instant::now() + conn.shared.config.young_for };
    let Some(Promoted { stream, conn, input, batch, tracked }) = serve(stream, conn, input, Vec::new(), tracked, Some(young)).await else {
        return;
    };
    let stream = match stream.move_to(&main) {
        Ok(stream) => stream,
        Err(error) => {
            // Nothing was lost yet: the connection ends as one whose socket failed.
            tracing::debug!(conn = conn.id(), %error, "a session could not move to the main runtime");
            conn.finalize();
            return;
        }
    };
    conn.shared.promoted.fetch_add(1, Ordering::Relaxed);
    // The serve future itself, not one that wraps it: a wrapper would keep a second
    // place for the stream and the reader's state for the connection's whole life.
    main.spawn(serve(stream, conn, input, batch, tracked, None));
}

/// A session on the intake runtime (it moves to `Shared::main`).
struct Young {
    /// When it is old enough to move.
    until: Instant,
}

/// What a young session hands to its continuation on the main runtime.
struct Promoted<T, I> {
    stream: T,
    conn: Arc<Conn>,
    input: Input<I>,
    /// Frames taken from the outbox and not written yet.
    batch: Vec<Bytes>,
    tracked: Tracked,
}

/// Frames, or bytes, written in all that make a young session move at once: a client
/// that gets that much (a fan-out, a big `presence_state`) must not wait behind the
/// intake's low priority; a connection of a churn gets its join reply and little more.
const PROMOTE_FRAMES: usize = 32;
const PROMOTE_BYTES: usize = 64 * 1024;

/// What the writer tells a young session's promotion (one task: relaxed atomics only
/// because the task must be `Send`).
#[derive(Default)]
struct WriterState {
    /// Waiting for frames: nothing taken from the outbox is unwritten.
    idle: AtomicBool,
    /// Frames and bytes taken from the outbox so far.
    frames: AtomicUsize,
    bytes: AtomicUsize,
}

impl WriterState {
    /// Counts `batch`; true once it took [`PROMOTE_FRAMES`] or [`PROMOTE_BYTES`].
    fn took(&self, batch: &[Bytes]) -> bool {
        self.frames.fetch_add(batch.len(), Ordering::Relaxed);
        self.bytes.fetch_add(batch.iter().map(Bytes::len).sum(), Ordering::Relaxed);
        self.has_backlog()
    }

    /// It took [`PROMOTE_FRAMES`] or [`PROMOTE_BYTES`].
    fn has_backlog(&self) -> bool {
        self.frames.load(Ordering::Relaxed) >= PROMOTE_FRAMES || self.bytes.load(Ordering::Relaxed) >= PROMOTE_BYTES
    }
}

/// Serves the connection until it ends (None), or, for a young session, until it
/// should move (Some): then neither side has anything half done (the reader is between
/// reads, its state in `input`; the writer waits for frames, or holds a batch in
/// `batch` that it has not begun to write).
async fn serve<T: Transport, I: Inbound>(
    mut stream: T,
    conn: Arc<Conn>,
    mut input: Input<I>,
    mut batch: Vec<Bytes>,
    tracked: Tracked,
    young: Option<Young>,
) -> Option<Promoted<T, I>> {
    // Finalizes even if a bug panics this task: the channels must hear that the connection is gone.
    let finalize = Finalize { conn: &conn, why: Cell::new(TransportClosed::Closed) };
    let mut peer_gone = false;
    let writer_state = WriterState::default();
    // None: the session moves (the futures that borrow the stream and the input are
    // dropped at the end of this block).
    let ended = {
        let writer = write_loop(&stream, &conn, &writer_state, &mut batch, young.is_some());
        tokio::pin!(writer);
        // On the heap, and only for a young session: its timer would otherwise be part
        // of every session's future for the connection's whole life.
        let mut promotion = young.as_ref().map(|young| Box::pin(promotion(young, &writer_state)));
        // Biased: the promotion looks at the writer after the writer's turn of this poll.
        tokio::select! {
            biased;
            end = &mut writer => Some(match end {
                // The close frame was the server's: the transport's, or a stop's.
                WriteEnd::Finished => TransportClosed::Shutdown,
                WriteEnd::Aborted => TransportClosed::Error(CloseCode::Policy),
                WriteEnd::Failed => TransportClosed::Closed,
            }),
            end = read_loop(&stream, &conn, &mut input) => {
                let why = match end {
                    ReadEnd::Close(code, reason, why) => {
                        conn.close(code, &reason);
                        why
                    }
                    ReadEnd::Gone => {
                        conn.outbox.abort();
                        peer_gone = true;
                        TransportClosed::Closed
                    }
                };
                let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
                Some(why)
            }
            () = async { promotion.as_mut().expect("young").await }, if promotion.is_some() => None,
        }
    };
    let Some(why) = ended else {
        finalize.hand_over();
        return Some(Promoted { stream, conn, input, batch, tracked });
    };
    finalize.why.set(why);
    if peer_gone {
        // A peer that reset or closed its side reads nothing more: no shutdown (a
        // system call, and a FIN or TLS close_notify into a dead socket) and no
        // linger. The rest of its teardown waits for the engine's spare time, since
        // such peers tend to vanish by the thousand at once (see `reaper.rs`).
        let why = finalize.hand_over();
        conn.shared.reaper.hand_over(Dying::new(Arc::clone(&conn), why, Box::new(stream), tracked));
        return None;
    }
    drop(finalize);
    stream.shutdown().await;
    linger(&stream).await;
    drop(tracked);
    None
}

/// Resolves when a young session should move and may: it is old enough or its writer
/// had a backlog, and the writer waits for frames.
async fn promotion(young: &Young, writer: &WriterState) {
    let grown = tokio::time::sleep_until(young.until);
    tokio::pin!(grown);
    let mut due = false;
    std::future::poll_fn(|cx| {
        due = due || grown.as_mut().poll(cx).is_ready() || writer.has_backlog();
        if due && writer.idle.load(Ordering::Relaxed) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// How long a closed connection is still read, at most.
const LINGER: Duration = Duration::from_secs(1);
/// How much a closed connection may still send, at most.
const LINGER_BYTES: usize = 1 << 20;

/// Reads and drops what the client still sends after the server closed (for example
/// the rest of a frame over `max_frame_size`), until it closes its side, for at most
/// [`LINGER`] and [`LINGER_BYTES`]. A socket closed with unread bytes in its receive
/// buffer answers them with a reset, and a reset makes the client's system drop what
/// it had not read yet: the close frame, whose code the client would never see (1006
/// instead of 1009).
async fn linger(stream: &impl Transport) {
    // On the heap, and only now: an array here would be part of every session task's
    // future, 16 KiB more per connection for its whole life.
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

struct Finalize<'a> {
    conn: &'a Conn,
    why: Cell<TransportClosed>,
}

impl Finalize<'_> {
    /// Disarms the guard: someone else finalizes the connection, for this reason.
    fn hand_over(self) -> TransportClosed {
        let why = self.why.get();
        // It holds nothing but references: forgetting it skips only its finalize.
        std::mem::forget(self);
        why
    }
}

impl Drop for Finalize<'_> {
    fn drop(&mut self) {
        self.conn.finalize_as(self.why.get());
    }
}

/// Writes what the outbox gives, a batch at a time, into `batch` (a batch left in it,
/// taken but not written, is written first: what a moved session carries over). A
/// young session that has just been sent its [`PROMOTE_FRAMES`] or [`PROMOTE_BYTES`]
/// lets the session move before it writes that batch, so that a big write (a large
/// `presence_state`, a fan-out's backlog) is done on the main runtime.
async fn write_loop(stream: &impl Transport, conn: &Conn, state: &WriterState, batch: &mut Vec<Bytes>, young: bool) -> WriteEnd {
    loop {
        if batch.is_empty() {
            state.idle.store(true, Ordering::Relaxed);
            let next = conn.outbox.next(batch).await;
            state.idle.store(false, Ordering::Relaxed);
            match next {
                Next::Write => {}
                Next::Finished => return WriteEnd::Finished,
                Next::Abort => return WriteEnd::Aborted,
            }
            // Counted only while young: the sessions that moved write without it.
            if young && state.took(batch) {
                // Nothing of the batch is written yet: the promotion, polled after
                // this, may move the session now; if it does not (the session is
                // ending), the batch is written on the next poll.
                state.idle.store(true, Ordering::Relaxed);
                tokio::task::yield_now().await;
                state.idle.store(false, Ordering::Relaxed);
            }
        }
        let written = match write_all(stream, batch, conn).await {
            Ok(()) => flush(stream, conn).await,
            failed => failed,
        };
        if let Err(error) = written {
            if error.kind() == io::ErrorKind::TimedOut {
                conn.close_stalled_reader();
                return WriteEnd::Aborted;
            }
            tracing::debug!(conn = conn.id(), %error, "write failed");
            conn.outbox.abort();
            return WriteEnd::Failed;
        }
        batch.clear();
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

/// Reads until the connection ends. Every await is a point where the future may be
/// dropped (a young session moving): all that must survive it is in `input`.
async fn read_loop<I: Inbound>(stream: &impl Transport, conn: &Arc<Conn>, input: &mut Input<I>) -> ReadEnd {
    let config = conn.config();
    let (timeout, frame_timeout) = (config.timeout, config.frame_timeout);
    // One timer per connection, moved only when it fires: a read just notes the time,
    // so a busy connection costs no timer work per message. That time is also the
    // clock of the rate limits and the frame timeout: one clock read per read.
    let idle = tokio::time::sleep_until(input.last_read + timeout);
    tokio::pin!(idle);
    // The frame timer is polled only while a frame is partly in, and moved only when
    // another frame starts: whole frames per read cost no timer work.
    let frame_deadline = tokio::time::sleep_until(input.last_read + frame_timeout);
    tokio::pin!(frame_deadline);
    let mut armed_for: Option<Instant> = None;
    loop {
        // What is kept: frames left when credit ran out, or the start of a frame.
        if let Some(end) = input.parse_unparsed(input.last_read, conn) {
            return end;
        }
        if conn.is_out_of_credit() {
            // Channels that handle nothing for a whole idle timeout are stuck: the
            // connection goes (and its client reconnects) rather than wait for ever,
            // unable even to see that its client has gone.
            if tokio::time::timeout(timeout, conn.credit.restored(conn.credit_limits())).await.is_err() {
                tracing::warn!(conn = conn.id(), ?timeout, "closing a connection whose channels stopped handling its messages");
                return ReadEnd::error(CloseCode::Internal, STUCK_REASON.to_owned());
            }
            // Not reading was our doing, not the client's silence or slowness.
            input.last_read = Instant::now();
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
                let deadline = input.last_read + timeout;
                if Instant::now() >= deadline {
                    return ReadEnd::Close(CloseCode::Protocol, String::new(), TransportClosed::Timeout);
                }
                idle.as_mut().reset(deadline);
                continue;
            }
            () = &mut frame_deadline, if partial_deadline.is_some() => {
                tracing::debug!(conn = conn.id(), ?frame_timeout, "closing a connection whose frame stalled");
                return ReadEnd::error(CloseCode::Policy, SLOW_FRAME_REASON.to_owned());
            }
        }
        let end = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match stream.try_read(&mut scratch) {
                Ok(0) => Some(ReadEnd::Gone),
                Ok(n) => {
                    let now = Instant::now();
                    input.last_read = now;
                    input.feed(&mut scratch[..n], now, conn)
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

/// The reader's side of a connection: the frame reader, the bytes not parsed yet, and
/// what takes the messages.
struct Input<I> {
    reader: Reader,
    /// Bytes read but not parsed: the start of a frame whose end has not arrived, or
    /// the frames that follow the message that used up the connection's credit.
    unparsed: Vec<u8>,
    /// Since when the frame at the start of `unparsed` has been coming in.
    partial_since: Option<Instant>,
    /// When the last read gave bytes: the idle timer's start.
    last_read: Instant,
    inbound: I,
}

impl<I> Input<I> {
    fn new(reader: Reader, leftover: Vec<u8>, inbound: I, now: Instant) -> Input<I> {
        Input { reader, unparsed: leftover, partial_since: None, last_read: now, inbound }
    }
}

/// What the reader does with each whole message and control frame of a connection.
trait Inbound {
    /// A whole message of `kind`, arrived at `now`.
    fn message(&mut self, conn: &Arc<Conn>, kind: DataKind, data: &[u8], now: Instant) -> Result<(), ReadEnd>;

    /// A ping (the reader answers it) or a pong.
    fn control(&mut self, conn: &Conn, kind: ControlKind, payload: &[u8]);
}

/// A channel connection's messages: decoded and run through the channel rules, within
/// the connection's inbound rate limits.
struct Channels {
    limits: Limits,
}

impl Inbound for Channels {
    fn message(&mut self, conn: &Arc<Conn>, kind: DataKind, data: &[u8], now: Instant) -> Result<(), ReadEnd> {
        let decoded = match kind {
            DataKind::Text => conn.serializer().decode_text(data),
            DataKind::Binary => conn.serializer().decode_binary(data),
        };
        let message = decoded.map_err(|error| close_for(conn, error.into()))?;
        self.limits.check(&message, now).map_err(|error| close_for(conn, error.into()))?;
        conn.handle_message(message, data.len()).map_err(|error| close_for(conn, error.into()))
    }

    /// Heartbeats are channel messages: control frames need nothing more than the pong.
    fn control(&mut self, _conn: &Conn, _kind: ControlKind, _payload: &[u8]) {}
}

/// A raw connection's messages: handed as they are to its transport, which gives the
/// credit of each back once handled.
struct Raw {
    peer: Peer,
    /// None: no limit (the default).
    messages: Option<RateLimit>,
}

impl Inbound for Raw {
    fn message(&mut self, conn: &Arc<Conn>, kind: DataKind, data: &[u8], now: Instant) -> Result<(), ReadEnd> {
        rate::take_message(self.messages.as_mut(), now).map_err(|error| close_for(conn, error.into()))?;
        if kind == DataKind::Text && std::str::from_utf8(data).is_err() {
            return Err(close_for(conn, ProtocolError::InvalidUtf8.into()));
        }
        self.peer.transport.unhandled.delivered(data.len(), &conn.credit);
        self.peer.sink.deliver(TransportEvent::Message(kind, data));
        Ok(())
    }

    fn control(&mut self, conn: &Conn, kind: ControlKind, payload: &[u8]) {
        if self.peer.wants_control {
            self.peer.transport.unhandled.delivered(payload.len(), &conn.credit);
            self.peer.sink.deliver(TransportEvent::Control(kind, payload));
        }
    }
}

impl<I: Inbound> Input<I> {
    /// Handles freshly read bytes: parsed in place, and only what is left is kept.
    fn feed(&mut self, data: &mut [u8], now: Instant, conn: &Arc<Conn>) -> Option<ReadEnd> {
        if !self.unparsed.is_empty() {
            self.unparsed.extend_from_slice(data);
            return self.parse_unparsed(now, conn);
        }
        match parse(&mut self.reader, &mut self.inbound, data, now, conn) {
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
        match parse(&mut self.reader, &mut self.inbound, &mut buf, now, conn) {
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

/// Parses and dispatches the whole frames at the start of `buf`, which arrived at `now`
/// (the messages of one read arrived together), up to the message that uses up the
/// connection's credit; returns how many bytes they took.
fn parse(reader: &mut Reader, inbound: &mut impl Inbound, buf: &mut [u8], now: Instant, conn: &Arc<Conn>) -> Result<usize, ReadEnd> {
    let mut pos = 0;
    while !conn.is_out_of_credit() {
        let read = match reader.read(&mut buf[pos..]) {
            Ok(Some(read)) => read,
            Ok(None) => break,
            Err(error) => return Err(close_for(conn, error)),
        };
        pos += read.consumed;
        match read.frame {
            None => {}
            Some(Frame::Pong(payload)) => inbound.control(conn, ControlKind::Pong, payload),
            Some(Frame::Ping(payload)) => {
                let _ = conn.send(frame::control(Opcode::Pong, payload));
                inbound.control(conn, ControlKind::Ping, payload);
            }
            Some(Frame::Close(payload)) => {
                return Err(ReadEnd::Close(CloseCode::echo(payload), String::new(), TransportClosed::Closed))
            }
            Some(Frame::Text(text)) => inbound.message(conn, DataKind::Text, text, now)?,
            Some(Frame::Binary(data)) => inbound.message(conn, DataKind::Binary, data, now)?,
        }
    }
    Ok(pos)
}

/// The close frame for an error of the peer, logged once here.
fn close_for(conn: &Conn, error: Error) -> ReadEnd {
    tracing::warn!(conn = conn.id(), %error, "closing connection");
    let code = match &error {
        Error::Capacity(CapacityError::MessageTooLarge { .. }) => CloseCode::TooBig,
        Error::Capacity(_) => CloseCode::Policy,
        Error::Protocol(
            ProtocolError::MalformedMessage(_) | ProtocolError::MalformedBinary(_) | ProtocolError::InvalidUtf8,
        ) => CloseCode::InvalidPayload,
        Error::Protocol(ProtocolError::BinaryNotSupported) => CloseCode::InvalidPayload,
        Error::Protocol(_) => CloseCode::Protocol,
        Error::Closed | Error::Io(_) => CloseCode::Internal,
        Error::Encode(_) => CloseCode::Internal,
    };
    ReadEnd::error(code, error.to_string())
}
