//! The long-poll transport: Phoenix 1.8's protocol at `<socket path>/longpoll`, for
//! clients that cannot keep a WebSocket open (phoenix.js's `LongPoll`, and its
//! `longPollFallbackMs` fallback).
//!
//! A session is one more kind of connection: a [`Conn`] (the same channel rules,
//! outbox, inbound credit, registry membership and connection limits as a WebSocket's)
//! that HTTP requests read and write instead of a socket.
//!
//! - `GET` without the token of a live session opens one: the application is asked as
//!   for an upgrade (`connect/3` with the query params, the `X-Phoenix-AuthToken`
//!   header as the auth token) and, if it accepts, gives the session its token
//!   ([`Conn::accept_session`]); the answer is `{"status":410,"token":...,"messages":[]}`
//!   (403 refused, 500 no answer in time). The sessions live in a table on the server
//!   ([`Sessions`]), looked up by that token (an unguessable string: Fenix signs it
//!   with the endpoint's `secret_key_base`, or makes 128 random bits), so a request
//!   costs no call to the application.
//! - `GET` with the token (the `x-phoenix-longpoll-token` header or the `token` param)
//!   polls: what the outbox holds is taken and answered `200` with `messages` (text
//!   frames as the JSON strings they are, binary frames in base64, as Phoenix does),
//!   or it waits for it up to the window and answers `204`. A close queued for the
//!   session (a `disconnect` broadcast, a drain) ends it: the polls after it answer
//!   410, so that the client connects anew.
//! - `POST` with the token publishes: the body is one message, or with `Content-Type:
//!   application/x-ndjson` a batch of at most [`MAX_BATCH`] lines, each JSON (it starts
//!   with `[` or `{`) or base64 of a binary message ([`parse_body`]). The messages go
//!   through the rate limits and the channel rules as a WebSocket reader's do, each
//!   waiting for inbound credit: a batch that outruns its channels waits (up to the
//!   window, then 408 and the rest is dropped, as Phoenix's request timeout), it is
//!   never buffered. A malformed message ends the session (400).
//! - `OPTIONS` answers the CORS preflight; any other method 400.
//!
//! Every answer is HTTP 200 with the real status in the JSON body, `cache-control:
//! no-store` and `access-control-allow-origin: *`, as Phoenix's; the HTTP connection
//! stays open for the next request. Bounds: the request body (`max_body_size`, 413),
//! each message (`max_frame_size`), lines per batch, what a session buffers (its
//! outbox: one that overflows takes nothing more and ends the session at its next
//! poll, as a WebSocket client that does not read is dropped), and sessions (counted with the WebSockets by `max_connections`
//! and `max_connections_per_address`). A session nobody polls for 1.5 windows ends,
//! and its channels are told as when a WebSocket closes.
//!
//! Tested in `tests/longpoll.rs` (over HTTP, against a plain-Rust handler) and with the
//! phoenix client in `test/js/longpoll.test.mjs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::time::Instant;

use super::connections::Tracked;
use super::handler::{ConnectRequest, TransportKind};
use super::http::{self, Connected, Request};
use super::outbox::Next;
use super::rate::Limits;
use super::{Conn, Shared};
use crate::protocol::{Message, Serializer};
use crate::websocket::frame::{split_server_frame, Opcode};

/// The most messages in one POST: phoenix.js sends batches of at most 100
/// (`MAX_LONGPOLL_BATCH_SIZE`).
pub const MAX_BATCH: usize = 100;

const TOKEN_HEADER: &str = "x-phoenix-longpoll-token";
const AUTH_TOKEN_HEADER: &str = "x-phoenix-authtoken";
const NDJSON: &str = "application/x-ndjson";
const JSON_HEADERS: &str =
    "content-type: application/json; charset=utf-8\r\ncache-control: no-store\r\naccess-control-allow-origin: *\r\n";

/// The answer to one long-poll request.
#[derive(Debug)]
pub(super) struct Answer {
    /// The HTTP status: 200, but for requests refused before the protocol (503).
    pub(super) status: u16,
    /// Header lines, each ending in CRLF.
    pub(super) headers: String,
    pub(super) body: Vec<u8>,
}

impl Answer {
    /// `{"status":status}`.
    fn status(status: u16) -> Answer {
        Answer::json(format!(r#"{{"status":{status}}}"#).into_bytes())
    }

    fn json(body: Vec<u8>) -> Answer {
        Answer { status: 200, headers: JSON_HEADERS.to_owned(), body }
    }

    /// `{"status":status,"token":token,"messages":[...]}`, the messages already JSON.
    fn messages(status: u16, token: &str, messages: &[Vec<u8>]) -> Answer {
        let mut body = format!(r#"{{"status":{status},"token":"#).into_bytes();
        serde_json::to_writer(&mut body, token).expect("a string serializes into a Vec");
        body.extend_from_slice(br#","messages":["#);
        for (i, message) in messages.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(message);
        }
        body.extend_from_slice(b"]}");
        Answer::json(body)
    }
}

/// The live sessions of a server, by token.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<Box<str>, Arc<Session>>>,
}

impl Sessions {
    fn get(&self, token: &str) -> Option<Arc<Session>> {
        self.lock().get(token).cloned()
    }

    /// Adds `session`; false (and nothing added) when its token is taken.
    fn insert(&self, session: &Arc<Session>) -> bool {
        let mut live = self.lock();
        if live.contains_key(&session.token) {
            return false;
        }
        live.insert(session.token.clone(), Arc::clone(session));
        true
    }

    /// Ends `session`: out of the table (its token answers as unknown from now on) and
    /// its connection finalized (its channels are told). Ending it again does nothing.
    fn end(&self, session: &Arc<Session>) {
        {
            let mut live = self.lock();
            if live.get(&session.token).is_some_and(|s| Arc::ptr_eq(s, session)) {
                live.remove(&session.token);
            }
        }
        session.conn.finalize();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Arc<Session>>> {
        // One insert or remove at a time: a panic elsewhere cannot leave it half-made.
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A long-poll session: a connection and what its requests share.
#[derive(Debug)]
struct Session {
    token: Box<str>,
    conn: Arc<Conn>,
    window: Duration,
    /// One poll takes from the outbox at a time.
    poll_turn: tokio::sync::Mutex<()>,
    /// One POST hands messages to the channels at a time, in order; the rate limits
    /// are counted there, as the WebSocket reader counts them.
    publish_turn: tokio::sync::Mutex<Limits>,
    /// When a poll last started or ended.
    last_poll: Mutex<Instant>,
    /// Polls in progress: a session being polled is not idle.
    polling: AtomicUsize,
    /// The close queued for it was taken: the next poll answers 410.
    closed: AtomicBool,
    _tracked: Tracked,
}

impl Session {
    fn touch(&self) {
        *self.last_poll.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    fn last_poll(&self) -> Instant {
        *self.last_poll.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts a poll in progress, and notes its end as a poll.
struct Polling<'a>(&'a Session);

impl<'a> Polling<'a> {
    fn start(session: &'a Session) -> Self {
        session.polling.fetch_add(1, Ordering::SeqCst);
        session.touch();
        Polling(session)
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.polling.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers one request to the long-poll path of socket `socket`, from `peer` (over TLS
/// when `secure`).
pub(super) async fn answer(peer: SocketAddr, secure: bool, request: Request, body: Vec<u8>, socket: usize, shared: &Arc<Shared>) -> Answer {
    let session = || find(&request, socket, shared);
    match request.method.as_str() {
        "OPTIONS" => preflight(&request),
        "GET" => match session() {
            Some(session) => poll(&session, shared).await,
            None => open(peer, secure, request, socket, shared).await,
        },
        "POST" => match session() {
            Some(session) => publish(&session, &request, &body, shared).await,
            None => Answer::status(410),
        },
        _ => Answer { status: 400, headers: String::new(), body: Vec::new() },
    }
}

/// The live session the request's token names, if it is one of this socket's.
fn find(request: &Request, socket: usize, shared: &Shared) -> Option<Arc<Session>> {
    let params;
    let token = match request.header(TOKEN_HEADER) {
        Some(token) => token,
        None => {
            params = http::parse_query(&request.query);
            params.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str())?
        }
    };
    let session = shared.sessions.get(token)?;
    // A token is bound to the socket it was made on.
    (session.conn.config().path == shared.sockets[socket].path).then_some(session)
}

fn preflight(request: &Request) -> Answer {
    let asked = request.header("access-control-request-headers").unwrap_or("");
    // Header values come from the request parser, which refuses CR and LF in them.
    let headers = format!(
        "access-control-allow-origin: *\r\naccess-control-allow-headers: {asked}\r\n\
         access-control-allow-methods: get, post, options\r\naccess-control-max-age: 3600\r\n"
    );
    Answer { status: 200, headers, body: Vec::new() }
}

/// Opens a session, as an upgrade opens a WebSocket connection.
async fn open(peer: SocketAddr, secure: bool, request: Request, socket: usize, shared: &Arc<Shared>) -> Answer {
    let params = http::parse_query(&request.query);
    let vsn = params.iter().find(|(k, _)| k == "vsn").map(|(_, v)| v.as_str());
    let Some(serializer) = Serializer::from_vsn(vsn) else {
        tracing::debug!(%peer, ?vsn, "long-poll connect refused: no serializer for this vsn");
        return Answer::status(403);
    };
    let auth_token = request.header(AUTH_TOKEN_HEADER).map(str::to_owned);
    let uri = request.uri();
    let headers = request.headers;
    let connect = ConnectRequest { socket, params, auth_token, peer, uri, headers, secure, transport: TransportKind::LongPoll };
    let Connected { conn, tracked, session_token } = match http::ask_connect(shared, serializer, connect).await {
        Ok(connected) => connected,
        // Not JSON: phoenix.js has no case for a 503 status, and retries on a body it
        // cannot parse.
        Err(503) => return Answer { status: 503, headers: String::new(), body: Vec::new() },
        Err(status) => return Answer::status(status),
    };
    let Some(token) = session_token else {
        tracing::error!(conn = conn.id(), "a long-poll connect was accepted without a session token");
        conn.finalize();
        return Answer::status(500);
    };
    let window = shared.sockets[socket].longpoll.as_ref().map_or(Duration::ZERO, |longpoll| longpoll.window);
    let limits = Limits::new(conn.config(), Instant::now());
    let session = Arc::new(Session {
        token,
        conn,
        window,
        poll_turn: tokio::sync::Mutex::new(()),
        publish_turn: tokio::sync::Mutex::new(limits),
        last_poll: Mutex::new(Instant::now()),
        polling: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        _tracked: tracked,
    });
    if !shared.sessions.insert(&session) {
        tracing::error!(conn = session.conn.id(), "a long-poll session token was given twice");
        session.conn.finalize();
        return Answer::status(500);
    }
    tokio::spawn(expire(Arc::clone(shared), Arc::clone(&session)));
    Answer::messages(410, &session.token, &[])
}

/// Ends `session` once nobody has polled it for 1.5 windows. (An outbox that
/// overflowed ends it at the next poll, which finds it aborted: only the poll waits on
/// the outbox, whose writer wake-up goes to one waiter.)
async fn expire(shared: Arc<Shared>, session: Arc<Session>) {
    let idle = session.window.mul_f32(1.5);
    loop {
        let now = Instant::now();
        let idle_until = session.last_poll() + idle;
        let polled = session.polling.load(Ordering::SeqCst) > 0;
        if idle_until <= now && !polled {
            tracing::debug!(conn = session.conn.id(), "long-poll session not polled for 1.5 windows: ended");
            break;
        }
        // A poll in progress ends within a window, and that counts as a poll.
        tokio::time::sleep_until(if idle_until <= now { now + session.window } else { idle_until }).await;
    }
    shared.sessions.end(&session);
}

/// Takes what the session's outbox holds, waiting for it up to the window.
async fn poll(session: &Arc<Session>, shared: &Shared) -> Answer {
    if session.closed.load(Ordering::SeqCst) {
        shared.sessions.end(session);
        return Answer::status(410);
    }
    let _polling = Polling::start(session);
    let _turn = session.poll_turn.lock().await;
    session.touch();
    let mut frames = Vec::new();
    match tokio::time::timeout(session.window, session.conn.outbox.next(&mut frames)).await {
        Err(_elapsed) => Answer::messages(204, &session.token, &[]),
        Ok(Next::Write) => {
            let (messages, closed) = unframe(&frames);
            if closed {
                session.closed.store(true, Ordering::SeqCst);
                if messages.is_empty() {
                    shared.sessions.end(session);
                    return Answer::status(410);
                }
            }
            Answer::messages(200, &session.token, &messages)
        }
        Ok(Next::Finished | Next::Abort) => {
            shared.sessions.end(session);
            Answer::status(410)
        }
    }
}

/// The messages of outbox frames as JSON strings, up to a close frame; and whether
/// there was one.
fn unframe(frames: &[Bytes]) -> (Vec<Vec<u8>>, bool) {
    let mut messages = Vec::with_capacity(frames.len());
    for frame in frames {
        let text = match split_server_frame(frame) {
            Some((Opcode::Text, payload)) => match std::str::from_utf8(payload) {
                Ok(text) => text.to_owned(),
                // The engine encodes its text frames from strings: never met.
                Err(_) => continue,
            },
            Some((Opcode::Binary, payload)) => base64::engine::general_purpose::STANDARD.encode(payload),
            Some((Opcode::Close, _)) => return (messages, true),
            // Pongs answer WebSocket pings, which long-poll clients cannot send.
            _ => continue,
        };
        messages.push(serde_json::to_vec(&text).expect("a string serializes into a Vec"));
    }
    (messages, false)
}

/// Hands the messages of a POST to the session's channels.
async fn publish(session: &Arc<Session>, request: &Request, body: &[u8], shared: &Shared) -> Answer {
    let mut limits = session.publish_turn.lock().await;
    let conn = &session.conn;
    let ndjson = request.header("content-type").is_some_and(|value| value.split(';').next().map(str::trim) == Some(NDJSON));
    let lines = match parse_body(body, ndjson, conn.config().max_frame_size) {
        Ok(lines) => lines,
        Err(error) => return refuse(session, shared, &error),
    };
    for line in lines {
        let (decoded, size) = match &line {
            Line::Text(text) => (conn.serializer().decode_text(text), text.len()),
            Line::Binary(data) => (conn.serializer().decode_binary(data), data.len()),
        };
        let handled = decoded.map_err(crate::Error::from).and_then(|message: Message| {
            limits.check(&message, Instant::now())?;
            Ok(message)
        });
        let message = match handled {
            Ok(message) => message,
            Err(error) => return refuse(session, shared, &error),
        };
        if conn.is_out_of_credit() && tokio::time::timeout(session.window, conn.credit.restored(conn.credit_limits())).await.is_err() {
            tracing::debug!(conn = conn.id(), "long-poll batch not taken by its channels within the window: 408");
            return Answer::status(408);
        }
        if let Err(error) = conn.handle_message(message, size) {
            return refuse(session, shared, &error);
        }
    }
    Answer::status(200)
}

/// Ends a session whose client broke the protocol or a limit: 400.
fn refuse(session: &Arc<Session>, shared: &Shared, error: &dyn std::fmt::Display) -> Answer {
    tracing::warn!(conn = session.conn.id(), %error, "closing long-poll session");
    shared.sessions.end(session);
    Answer::status(400)
}

/// One message of a POST body.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A text message (JSON), as sent.
    Text(&'a [u8]),
    /// A binary message, decoded from base64.
    Binary(Vec<u8>),
}

/// Why a POST body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More lines than a batch may have.
    #[error("long-poll batch of more than {MAX_BATCH} messages")]
    TooManyLines,
    /// A message larger than `max_message`.
    #[error("long-poll message of {size} bytes, more than {max}")]
    MessageTooLarge {
        /// Its size (decoded, for base64).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A line that is neither JSON nor base64.
    #[error("long-poll line is neither JSON nor base64")]
    InvalidBase64,
}

/// Splits a POST body into its messages: the whole body is one text message, or with
/// `ndjson` (`Content-Type: application/x-ndjson`) each line (`\n` or `\r\n`) is one,
/// JSON if it starts with `[` (serializer 2.0.0) or `{` (1.0.0), which base64 never
/// does, else base64 of a binary message. At most [`MAX_BATCH`] lines, each message at
/// most `max_message` bytes. Pure: the `longpoll_body` fuzz target calls it.
///
/// ```
/// use fenix_core::server::{parse_body, Line};
/// let join = br#"["1","1","room:lobby","phx_join",{}]"#;
/// let body = [&join[..], b"\nAAEC"].concat();
/// let lines = parse_body(&body, true, 1 << 20).unwrap();
/// assert_eq!(lines, [Line::Text(join), Line::Binary(vec![0, 1, 2])]);
/// ```
pub fn parse_body(body: &[u8], ndjson: bool, max_message: usize) -> Result<Vec<Line<'_>>, BodyError> {
    let too_large = |size| BodyError::MessageTooLarge { size, max: max_message };
    if !ndjson {
        return if body.len() > max_message { Err(too_large(body.len())) } else { Ok(vec![Line::Text(body)]) };
    }
    let mut lines = Vec::new();
    for line in body.split(|&byte| byte == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if lines.len() == MAX_BATCH {
            return Err(BodyError::TooManyLines);
        }
        let parsed = match line.first() {
            Some(b'[' | b'{') if line.len() > max_message => return Err(too_large(line.len())),
            Some(b'[' | b'{') => Line::Text(line),
            _ if base64::decoded_len_estimate(line.len()) > max_message + 2 => return Err(too_large(line.len() / 4 * 3)),
            _ => Line::Binary(base64::engine::general_purpose::STANDARD.decode(line).map_err(|_| BodyError::InvalidBase64)?),
        };
        if let Line::Binary(data) = &parsed {
            if data.len() > max_message {
                return Err(too_large(data.len()));
            }
        }
        lines.push(parsed);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOIN: &[u8] = br#"["1","1","room:lobby","phx_join",{}]"#;

    #[test]
    fn a_body_without_ndjson_is_one_text_message() {
        let body = b"[\"1\",\"2\",\"room:lobby\",\"echo\",{\"a\":\"x\\ny\"}]";
        assert_eq!(parse_body(body, false, 1 << 20), Ok(vec![Line::Text(body)]));
        assert_eq!(parse_body(body, false, 10), Err(BodyError::MessageTooLarge { size: body.len(), max: 10 }));
    }

    #[test]
    fn ndjson_lines_are_json_or_base64() {
        // V1 (an object), V2 (an array), a binary push in base64, CRLF line ends.
        let body = [br#"{"topic":"t","event":"e","payload":{},"ref":"1"}"#.as_slice(), b"\r\n", JOIN, b"\n", b"AAEC"].concat();
        let lines = parse_body(&body, true, 1 << 20).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], Line::Text(JOIN));
        assert_eq!(lines[2], Line::Binary(vec![0, 1, 2]));
    }

    #[test]
    fn a_batch_has_at_most_100_lines() {
        let batch = |n: usize| vec![JOIN; n].join(&b'\n');
        assert_eq!(parse_body(&batch(MAX_BATCH), true, 1 << 20).map(|l| l.len()), Ok(MAX_BATCH));
        assert_eq!(parse_body(&batch(MAX_BATCH + 1), true, 1 << 20), Err(BodyError::TooManyLines));
    }

    #[test]
    fn refuses_bad_base64_and_messages_over_the_limit() {
        assert_eq!(parse_body(b"not base64!", true, 1 << 20), Err(BodyError::InvalidBase64));
        assert_eq!(parse_body(b"", true, 1 << 20), Ok(vec![Line::Binary(Vec::new())]));
        let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 300]);
        assert_eq!(parse_body(big.as_bytes(), true, 300).map(|l| l.len()), Ok(1));
        assert!(matches!(parse_body(big.as_bytes(), true, 299), Err(BodyError::MessageTooLarge { .. })));
        let huge = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 3000]);
        assert!(matches!(parse_body(huge.as_bytes(), true, 300), Err(BodyError::MessageTooLarge { .. })), "refused before decoding");
        assert!(matches!(parse_body(JOIN, true, 10), Err(BodyError::MessageTooLarge { .. })));
    }

    #[test]
    fn frames_become_json_strings_up_to_a_close() {
        let text = crate::websocket::frame::encode(|out| {
            out.extend_from_slice(br#"["1","1","t","phx_reply",{}]"#);
            crate::protocol::Encoded::Text
        });
        let binary = crate::websocket::frame::encode(|out| {
            out.extend_from_slice(&[0, 1, 2]);
            crate::protocol::Encoded::Binary
        });
        let close = crate::websocket::frame::close(crate::websocket::CloseCode::GoingAway, "");
        let (messages, closed) = unframe(&[text.clone(), binary, close, text]);
        let messages: Vec<String> = messages.into_iter().map(|m| String::from_utf8(m).unwrap()).collect();
        assert_eq!(messages, [r#""[\"1\",\"1\",\"t\",\"phx_reply\",{}]""#, r#""AAEC""#]);
        assert!(closed);
    }
}
