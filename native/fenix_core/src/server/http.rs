//! HTTP/1.1 request heads and the router: WebSocket upgrades, long-poll requests
//! (answered by `longpoll.rs`, on connections kept alive), static files, 404.

use std::net::SocketAddr;
use std::path::{Component, Path};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::conn::{Conn, Decision};
use super::connections::{Connections, Tracked};
use super::handler::{ConnectRequest, TransportKind};
use super::transport::Stream;
use super::{longpoll, session, Shared, SocketKind};
use crate::protocol::Serializer;
use crate::websocket::{accept_key, check_upgrade, HandshakeError, SUPPORTED_VERSION};

/// The largest request head accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
pub(crate) const MAX_HEADERS: usize = 64;
const CACHE_CONTROL: &str = "cache-control: max-age=0, private, must-revalidate\r\n";
const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";
const PHOENIX_SUBPROTOCOL: &str = "phoenix";

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    /// Names in lowercase, in the order they came.
    pub(crate) headers: Vec<(String, String)>,
}

impl Request {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub(super) fn uri(&self) -> String {
        if self.query.is_empty() { self.path.clone() } else { format!("{}?{}", self.path, self.query) }
    }
}

/// Serves one connection (TCP, or TLS once its handshake is done), whose first request
/// head must be in by `deadline`: one request, or for long-poll requests (which keep
/// the connection alive, as their client polls continuously) one after another, each
/// head within the head timeout of the answer before.
pub(super) async fn serve(mut stream: impl Stream, peer: SocketAddr, shared: Arc<Shared>, mut deadline: Instant) {
    let mut buffered = Vec::new();
    let mut first = true;
    loop {
        let head = tokio::time::timeout_at(deadline, read_head(&mut stream, std::mem::take(&mut buffered))).await;
        let (request, leftover) = match head {
            Ok(Ok(Some(parsed))) => parsed,
            Ok(Ok(None)) => return,
            Ok(Err(status)) => return respond(&mut stream, status, "", b"").await,
            // A kept-alive connection that stays quiet is closed without a word.
            Err(_elapsed) if !first => return,
            Err(_elapsed) => {
                tracing::debug!(%peer, "no complete request head within the head timeout: 408");
                return respond(&mut stream, 408, "", b"").await;
            }
        };
        first = false;
        let socket_of = |suffix: &str| shared.sockets.iter().position(|s| request.path.strip_suffix(suffix) == Some(s.path.as_str()));
        if let Some(socket) = socket_of("/websocket") {
            return upgrade(stream, peer, request, leftover, socket, shared).await;
        }
        if let Some(socket) = socket_of("/longpoll").filter(|&socket| shared.sockets[socket].longpoll.is_some()) {
            match longpoll_exchange(&mut stream, peer, request, leftover, socket, &shared).await {
                Some(rest) => buffered = rest,
                None => return,
            }
            deadline = Instant::now() + shared.config.head_timeout;
            continue;
        }
        return match (&shared.config.static_dir, request.method.as_str()) {
            (Some(dir), "GET" | "HEAD") => serve_file(&mut stream, dir, &request).await,
            _ => respond(&mut stream, 404, "", b"").await,
        };
    }
}

/// One long-poll request: its body is read (bounded in size and time) and answered;
/// returns the bytes after it, for the next request, unless the connection closes.
async fn longpoll_exchange<S: Stream>(
    stream: &mut S,
    peer: SocketAddr,
    request: Request,
    leftover: Vec<u8>,
    socket: usize,
    shared: &Arc<Shared>,
) -> Option<Vec<u8>> {
    let max_body = shared.sockets[socket].longpoll.as_ref().map_or(0, |longpoll| longpoll.max_body_size);
    let keep_alive = !request.header("connection").is_some_and(|value| value.eq_ignore_ascii_case("close"));
    let read = tokio::time::timeout(shared.config.head_timeout, read_body(stream, &request, leftover, max_body)).await;
    let (body, rest) = match read {
        Ok(Ok(Some(read))) => read,
        Ok(Ok(None)) => return None,
        Ok(Err(status)) => {
            tracing::debug!(%peer, status, "long-poll request body refused");
            respond(stream, status, "", b"").await;
            return None;
        }
        Err(_elapsed) => {
            tracing::debug!(%peer, "long-poll request body not in within the head timeout: 408");
            respond(stream, 408, "", b"").await;
            return None;
        }
    };
    let answer = longpoll::answer(peer, S::SECURE, request, body, socket, shared).await;
    let keep_alive = keep_alive && answer.status == 200;
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\n{}{}\r\n",
        answer.status,
        reason(answer.status),
        answer.body.len(),
        answer.headers,
        if keep_alive { "" } else { "connection: close\r\n" },
    );
    // Flushed: over TLS, the answer may still be in rustls's buffer.
    let written = stream.write_all(head.as_bytes()).await.is_ok()
        && stream.write_all(&answer.body).await.is_ok()
        && stream.flush().await.is_ok();
    if written && keep_alive {
        return Some(rest);
    }
    let _ = stream.shutdown().await;
    None
}

/// Reads the body that `request` announces with `content-length` (none: empty), of at
/// most `max` bytes, after the bytes already in `buf`: the body and the bytes after
/// it, `Ok(None)` if the peer went away, or the status that refuses it (413 too
/// large, 411 a body of unannounced length, 400 a bad length).
async fn read_body(stream: &mut impl Stream, request: &Request, mut buf: Vec<u8>, max: usize) -> Result<Option<(Vec<u8>, Vec<u8>)>, u16> {
    if request.header("transfer-encoding").is_some() {
        return Err(411);
    }
    let len = match request.header("content-length") {
        None => 0,
        Some(len) => len.trim().parse::<usize>().map_err(|_| 400u16)?,
    };
    if len > max {
        return Err(413);
    }
    while buf.len() < len {
        buf.reserve(len - buf.len());
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
    let rest = buf.split_off(len);
    Ok(Some((buf, rest)))
}

/// Reads until the end of the request head, after the bytes already in `buf`.
/// `Ok(None)`: the peer went away.
async fn read_head(stream: &mut impl Stream, mut buf: Vec<u8>) -> Result<Option<(Request, Vec<u8>)>, u16> {
    loop {
        if !buf.is_empty() {
            if let Some((request, len)) = parse_head(&buf)? {
                return Ok(Some((request, buf[len..].to_vec())));
            }
        }
        // read_buf fills the Vec's spare room: no buffer lives in the task's own state.
        buf.reserve(1024);
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Parses the request head at the start of `buf`: `Ok(Some((request, len)))` when the
/// head is complete and takes `len` bytes, `Ok(None)` when more bytes are needed, or the
/// status that refuses it: 400 for a malformed head, 431 for one not complete within
/// [`MAX_HEAD`] bytes. Pure, so the `http_head` fuzz target runs it on any bytes.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let target = parsed.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let request = Request {
                method: parsed.method.unwrap_or("GET").to_owned(),
                path: path.to_owned(),
                query: query.to_owned(),
                headers: parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect(),
            };
            Ok(Some((request, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Ok(None),
        Ok(httparse::Status::Partial) => Err(431),
        Err(_) => Err(400),
    }
}

async fn upgrade<S: Stream>(
    mut stream: S,
    peer: SocketAddr,
    request: Request,
    leftover: Vec<u8>,
    socket: usize,
    shared: Arc<Shared>,
) {
    let key = match check_upgrade(&request.method, &request.headers) {
        Ok(key) => key,
        Err(error) => return refuse_upgrade(&mut stream, peer, error).await,
    };
    let params = parse_query(&request.query);
    let vsn = params.iter().find(|(k, _)| k == "vsn").map(|(_, v)| v.as_str());
    let serializer = match shared.sockets[socket].kind {
        SocketKind::Channels => Serializer::from_vsn(vsn),
        // A raw connection carries no channel messages: its serializer is never used.
        SocketKind::Raw => Serializer::from_vsn(None),
    };
    let Some(serializer) = serializer else {
        // As Phoenix: a version no serializer speaks (or no version at all that parses)
        // is refused, 403.
        tracing::debug!(%peer, ?vsn, "upgrade refused: no serializer for this vsn");
        return respond(&mut stream, 403, "", b"").await;
    };
    let offered = offered_protocols(&request);
    let auth_token = auth_token(&offered);
    let accept = accept_key(key.as_bytes());
    let offers_phoenix = offered.contains(&PHOENIX_SUBPROTOCOL);
    drop(offered);
    let uri = request.uri();
    // The request is handed over whole: a connection keeps none of it.
    let connect =
        ConnectRequest { socket, params, auth_token, peer, uri, headers: request.headers, secure: S::SECURE, transport: TransportKind::WebSocket };
    let Connected { conn, tracked, .. } = match ask_connect(&shared, serializer, connect).await {
        Ok(connected) => connected,
        Err(status) => return respond(&mut stream, status, "", b"").await,
    };
    let protocol = if offers_phoenix { format!("sec-websocket-protocol: {PHOENIX_SUBPROTOCOL}\r\n") } else { String::new() };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {accept}\r\n{protocol}{CACHE_CONTROL}\r\n"
    );
    // Flushed: over TLS, the 101 may still be in rustls's buffer, and the
    // client waits for it before it sends anything.
    if stream.write_all(head.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return conn.finalize();
    }
    // A task of its own: the session does not carry the upgrade's state (about
    // 900 bytes) for the connection's whole life.
    tokio::spawn(session::run(stream.into_session(), conn, leftover, tracked));
}

/// A connection the application accepted.
pub(super) struct Connected {
    pub(super) conn: Arc<Conn>,
    /// Keeps it counted by the connection limits.
    pub(super) tracked: Tracked,
    /// What [`Conn::accept_session`] gave (long-poll connections need it).
    pub(super) session_token: Option<Box<str>>,
}

/// Makes the connection `request` asks for, counts it (the connection limits), asks
/// the application, and waits for its answer: the connection, or the HTTP status that
/// refuses it (503 beyond a limit or while stopping, 403 refused, 500 no answer in time).
pub(super) async fn ask_connect(shared: &Arc<Shared>, serializer: Serializer, request: ConnectRequest) -> Result<Connected, u16> {
    let config = Arc::clone(&shared.sockets[request.socket]);
    let (decided, decision) = oneshot::channel();
    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new(Conn::new(id, serializer, Arc::clone(&config), Arc::clone(shared), decided));
    let tracked = match Connections::track(shared, &conn, request.peer.ip()) {
        Ok(tracked) => tracked,
        Err(refusal) => {
            // Debug, not warn: a storm of refused connections must not flood the log.
            tracing::debug!(peer = %request.peer, ?refusal, "connect refused: 503");
            conn.finalize();
            return Err(503);
        }
    };
    shared.handler.connect(&conn, request);

    // A stopping server answers now: the application that would decide may be gone.
    let decision = tokio::select! {
        decision = tokio::time::timeout(config.connect_timeout, decision) => decision,
        () = shared.connections.stopped() => {
            conn.finalize();
            return Err(503);
        }
    };
    match decision {
        Ok(Ok(Decision::Accept(session_token))) => Ok(Connected { conn, tracked, session_token }),
        Ok(Ok(Decision::Refuse)) => {
            conn.finalize();
            Err(403)
        }
        Ok(Err(_)) | Err(_) => {
            tracing::error!(conn = id, "connect was not answered in time");
            conn.finalize();
            Err(500)
        }
    }
}

/// Answers a request that is not an upgrade the server accepts, saying why in the body.
async fn refuse_upgrade(stream: &mut impl Stream, peer: SocketAddr, error: HandshakeError) {
    tracing::debug!(%peer, %error, "WebSocket upgrade refused");
    // A 426 names the versions the server speaks (RFC6455§4.4).
    let extra_headers = match error {
        HandshakeError::UnsupportedVersion => format!("sec-websocket-version: {SUPPORTED_VERSION}\r\n"),
        _ => String::new(),
    };
    respond(stream, error.status(), &extra_headers, error.to_string().as_bytes()).await
}

/// The subprotocols a request offers (`Sec-WebSocket-Protocol`, a comma-separated list).
pub(crate) fn offered_protocols(request: &Request) -> Vec<&str> {
    request.header("sec-websocket-protocol").map(|v| v.split(',').map(str::trim).collect()).unwrap_or_default()
}

/// The token of the `base64url.bearer.phx.<token>` subprotocol phoenix.js offers, if any.
pub(crate) fn auth_token(offered: &[&str]) -> Option<String> {
    offered.iter().find_map(|p| p.strip_prefix(AUTH_TOKEN_PREFIX)).and_then(decode_auth_token)
}

fn decode_auth_token(encoded: &str) -> Option<String> {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes = engine.decode(encoded.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()
}

/// Splits and percent-decodes a query string (`+` is a space, as in forms).
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|d| d as u8)
}

async fn serve_file(stream: &mut impl Stream, dir: &Path, request: &Request) {
    let relative = request.path.trim_start_matches('/');
    let relative = if relative.is_empty() { "index.html" } else { relative };
    let relative = Path::new(relative);
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return respond(stream, 404, "", b"").await;
    }
    match tokio::fs::read(dir.join(relative)).await {
        Ok(body) => {
            let content_type = format!("content-type: {}\r\n", content_type(relative));
            let body = if request.method == "HEAD" { Vec::new() } else { body };
            respond(stream, 200, &content_type, &body).await
        }
        Err(_) => respond(stream, 404, "", b"").await,
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Writes a whole response and closes the connection.
async fn respond(stream: &mut impl Stream, status: u16, extra_headers: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nvary: accept-encoding\r\n{CACHE_CONTROL}{extra_headers}connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_ok() {
        let _ = stream.write_all(body).await;
    }
    let _ = stream.shutdown().await;
}

/// The reason phrase of the statuses the server answers with.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_that_may_come_in_parts() {
        // The upgrade of the phoenix npm client (through `ws`), and a body already behind it.
        let head = b"GET /socket/websocket?user_id=u1&vsn=2.0.0 HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                     Host: 127.0.0.1:4100\r\n\r\n\x81";
        let (request, len) = parse_head(head).unwrap().unwrap();
        assert_eq!(len, head.len() - 1);
        assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/socket/websocket"));
        assert_eq!(request.query, "user_id=u1&vsn=2.0.0");
        assert_eq!(request.header("sec-websocket-version"), Some("13"));
        for cut in [0, 1, 20, len - 1] {
            assert_eq!(parse_head(&head[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_malformed_and_endless_heads() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"), Err(400));
        let endless = [&b"GET / HTTP/1.1\r\nx: "[..], &[b'a'; MAX_HEAD]].concat();
        assert_eq!(parse_head(&endless[..MAX_HEAD - 1]), Ok(None));
        assert_eq!(parse_head(&endless), Err(431));
    }

    #[test]
    fn decodes_query_strings() {
        assert_eq!(
            parse_query("user_id=a%20b&vsn=2.0.0&x=1+2&flag&bad=%zz&tail=%4"),
            [("user_id", "a b"), ("vsn", "2.0.0"), ("x", "1 2"), ("flag", ""), ("bad", "%zz"), ("tail", "%4")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn decodes_the_auth_token_of_the_phoenix_client() {
        // btoa("my token") with the URL-safe alphabet and no padding, as phoenix.js sends it.
        assert_eq!(decode_auth_token("bXkgdG9rZW4").as_deref(), Some("my token"));
        assert_eq!(decode_auth_token("bXkgdG9rZW4=").as_deref(), Some("my token"));
        assert_eq!(decode_auth_token("!!"), None);
    }
}
