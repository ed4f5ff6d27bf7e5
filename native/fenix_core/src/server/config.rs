//! Server options, each with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::tls::HttpsConfig;

/// The server's options.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the plain HTTP listener. Default `127.0.0.1:4000`; `None`: no plain
    /// listener (HTTPS only).
    pub addr: Option<SocketAddr>,
    /// The HTTPS listener, serving the same sockets. Default none.
    pub https: Option<HttpsConfig>,
    /// The sockets, by path.
    pub sockets: Vec<SocketConfig>,
    /// A directory served at `/` for GET requests no socket matches. Default none.
    pub static_dir: Option<PathBuf>,
    /// How long a TCP connection may take to send its whole request head (request line
    /// and headers), its TLS handshake included on the HTTPS listener; one that sends
    /// nothing, or stops half-way, is answered 408 and closed (a handshake not finished
    /// in time is closed). Default 10 s: a head is one packet or a few, and a connection that never
    /// finishes it otherwise holds a task and a descriptor for as long as it likes.
    pub head_timeout: Duration,
    /// The most connections the server holds; an upgrade beyond it is answered 503.
    /// Default 100,000 (above what one process's open files allow on most machines:
    /// the limit is there to be set lower).
    pub max_connections: usize,
    /// The most connections from one remote IP address; an upgrade beyond it is
    /// answered 503, so that one host opening connections in a loop cannot take the
    /// server's descriptors from everyone else. Default 1,000 (many users behind one
    /// NAT stay well under it; raise it for a proxy in front that connects from one
    /// address).
    pub max_connections_per_address: usize,
    /// How long a new connection stays on the intake runtime, when the server has one
    /// (see [`Server::start_with_intake`](super::Server::start_with_intake)), before it
    /// moves to the main runtime; it moves sooner once it has been sent 32 frames or 64 KiB.
    /// Default 1 s: longer than the life of the connections of a reconnect storm or a
    /// churn attack, short enough that a real client soon leaves the intake's low priority.
    pub young_for: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: Some(SocketAddr::from(([127, 0, 0, 1], 4000))),
            https: None,
            sockets: Vec::new(),
            static_dir: None,
            head_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            max_connections_per_address: 1_000,
            young_for: Duration::from_secs(1),
        }
    }
}

/// One socket (`socket "/socket", MyApp.UserSocket, websocket: [...]`).
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// The mount path, e.g. `/socket`; the WebSocket is at `<path>/websocket`.
    pub path: String,
    /// What its connections speak. Default [`SocketKind::Channels`].
    pub kind: SocketKind,
    /// A connection with no inbound frame for this long is closed. Default 60 s.
    pub timeout: Duration,
    /// The largest inbound message, in bytes. Default 1 MiB.
    pub max_frame_size: usize,
    /// The most channels one connection may join. Default 100.
    pub max_channels: usize,
    /// The most frames queued for one client; a client that falls further behind is
    /// disconnected. Default 4096: a burst of a few thousand broadcasts must not
    /// drop a client that reads, while one that stops reading costs at most this many slots.
    pub outbox_capacity: usize,
    /// The most bytes queued for one client; a client that falls further behind is
    /// disconnected. One frame larger than this is still queued when nothing else is.
    /// Default 1 MiB (Centrifugo's client queue is bounded the same way): 4,096 frames of
    /// 1 MiB would otherwise be 4 GiB.
    pub outbox_capacity_bytes: usize,
    /// The most client messages a connection may have handed to its channels that they
    /// have not handled yet; the connection is not read while it has that many, so TCP
    /// slows a flooding client down. Default 16. Measured with `make bench`'s flood (a
    /// flooder that reads its replies beside 50 paced echo clients, one core): with 64,
    /// the healthy p99 went 0.35-0.47 -> 0.87 ms (1.9-2.5x) and the flooder got 260k
    /// pushes/s in; with 16, 0.43-0.50 -> 0.51-0.58 ms (1.15-1.25x) and 180k/s. A client
    /// that waits for its replies, as the phoenix client does, never comes near it.
    pub max_unhandled_messages: usize,
    /// The same bound in bytes (wire size of the messages). Default 1 MiB: a connection
    /// costs the channels' mailboxes at most about this much, whatever its client sends.
    pub max_unhandled_bytes: usize,
    /// How long the application may take to answer a connect. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a frame may take from its first byte to its last; a client that
    /// starts one and stalls is closed (1008). The idle timeout alone restarts on every
    /// read, so a frame trickled a byte a minute would be held, with its buffer, for
    /// ever. Default 10 s: a 1 MiB frame (the default `max_frame_size`) needs about
    /// 100 KiB/s; raise it for big frames over slow links.
    pub frame_timeout: Duration,
    /// How long the client's socket may take nothing while there is something to write
    /// to it; a client that stays that far behind (it does not read, or its network is
    /// gone) is dropped without a close frame (one could not be written), logged and
    /// counted. A client that falls behind by more than `outbox_capacity` frames or
    /// `outbox_capacity_bytes` is dropped at once. Default 30 s: a phone that loses its
    /// network for a moment catches up, a dead peer does not hold its queue for ever
    /// (without this, one that still sends heartbeats but never reads would).
    pub slow_reader_timeout: Duration,
    /// The most messages a second a client may send (heartbeats and joins included),
    /// with a burst of as many; beyond it the connection is closed (1008). Default
    /// none: the inbound credit (`max_unhandled_messages`) already makes a flood cost
    /// the other clients nothing (the flood benchmark: a flooder that reads its replies
    /// is served some 160k messages a second on one core while 50 paced clients keep
    /// their p99), so closing a fast client is a policy for the application to choose.
    pub max_messages_per_second: Option<usize>,
    /// The most joins a second, with a burst of as many; beyond it, 1008. Default
    /// 1,000: each join starts a channel process, and a client that joins and leaves in
    /// a loop is not a client; a page that joins all its channels at once (at most
    /// `max_channels`, 100) stays well under it.
    pub max_joins_per_second: usize,
    /// The long-poll transport at `<path>/longpoll`, when the socket enables it.
    /// Default none (off: the path answers 404), as Phoenix's `longpoll: false`.
    pub longpoll: Option<LongPollConfig>,
}

/// A socket's long-poll transport (`longpoll: true` or `longpoll: [window_ms: ...]`).
#[derive(Debug, Clone)]
pub struct LongPollConfig {
    /// How long a poll waits for messages before it is answered 204; a session that
    /// nobody polls for 1.5 windows ends, with its channels. Default 10 s, as Phoenix's
    /// `window_ms`.
    pub window: Duration,
    /// The largest request body (a POST of one message or a batch of them), in bytes;
    /// a larger one is answered 413 and the HTTP connection closed, before any of it is
    /// read. Default 1 MiB, the default `max_unhandled_bytes`: a batch that is larger
    /// could not be handed to the channels at once anyway. Each message of a batch is
    /// bounded by the socket's `max_frame_size` too.
    pub max_body_size: usize,
}

impl Default for LongPollConfig {
    fn default() -> Self {
        LongPollConfig { window: Duration::from_secs(10), max_body_size: 1 << 20 }
    }
}

impl SocketConfig {
    /// A socket at `path` with the default options.
    pub fn new(path: impl Into<String>) -> Self {
        SocketConfig {
            path: path.into(),
            kind: SocketKind::Channels,
            timeout: Duration::from_secs(60),
            max_frame_size: 1 << 20,
            max_channels: 100,
            outbox_capacity: 4096,
            outbox_capacity_bytes: 1 << 20,
            max_unhandled_messages: 16,
            max_unhandled_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            slow_reader_timeout: Duration::from_secs(30),
            max_messages_per_second: None,
            max_joins_per_second: 1_000,
            longpoll: None,
        }
    }
}

/// What a socket's connections speak, fixed when the socket is configured: the
/// connection's session is picked by it once, at the upgrade, so that neither kind
/// pays for the other per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// The Phoenix channel protocol (`use Fenix.Socket`): joins, channels, heartbeats.
    Channels,
    /// Raw WebSocket messages (a `Fenix.Socket.Transport`): each whole text or binary
    /// message goes to the connection's one transport process, as it came. The
    /// connect parameters' `vsn` means nothing here, and `max_channels` and
    /// `max_joins_per_second` do not apply.
    Raw,
}
