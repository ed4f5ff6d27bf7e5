//! The tokio server: HTTP/1.1, the WebSocket upgrade, and one session task per connection.
//!
//! Data flow: [`listener`] accepts TCP connections and spawns a task per connection;
//! on the HTTPS listener, [`tls`] runs the TLS handshake in that task first; [`http`]
//! reads the request head and routes it (WebSocket upgrade at
//! `<socket path>/websocket`, static files, 404). An upgrade asks the application's
//! [`Handler::connect`](crate::Handler::connect) and waits for its answer, then
//! [`session`] runs the connection (over TCP, or TLS: see [`transport`]): the reader parses frames and hands messages to the
//! [`Conn`] state machine (while the connection has inbound credit, see [`credit`]), the
//! writer drains the [`Conn`]'s outbox with vectored writes. What the application sends
//! goes through [`outbound`]: straight to the outbox, or into the sender's lane behind
//! its broadcasts, which one engine task fans out, lane by lane. A raw socket's
//! connections (see `raw.rs`) skip the channel protocol: their messages go to
//! one transport each.
//! [`connections`] tracks every live connection, so that [`Server::stop`] closes them all.
//! A socket that enables long-poll also answers at `<socket path>/longpoll`
//! ([`longpoll`]): a session there is a [`Conn`] too, that HTTP requests poll and post
//! to instead of a socket.
//!
//! Tested in `tests/server.rs` with a real WebSocket client against a plain-Rust handler.

mod channel;
mod config;
mod conn;
mod connections;
mod credit;
mod handler;
mod http;
mod listener;
mod longpoll;
mod outbound;
mod outbox;
mod presence;
mod rate;
mod reaper;
mod session;
mod slots;
mod raw;
mod tls;
mod transport;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use channel::Channel;
pub use config::{Config, LongPollConfig, SocketConfig, SocketKind};
pub use tls::{CipherSuite, HttpsConfig, TlsError};
pub use conn::{Conn, JoinError, JoinRef};
pub use connections::Drained;
pub use handler::{ConnectRequest, Handler, JoinRequest, TransportKind};
pub use longpoll::{parse_body, BodyError, Line, MAX_BATCH};
pub use outbound::{Pace, Sender, LANE_BYTES, LANE_OPS, QUANTUM};
pub use raw::RawTransport;
pub use presence::{BroadcastHandler, DiffHandler, DiffRoute, Listed, PresenceHub, DEFAULT_TICK, PRESENCE_DIFF};

use tokio_rustls::TlsAcceptor;

/// The request-head parser and the upgrade's pure steps, for the fuzz targets
/// ([`crate::fuzz_api`]); the server itself keeps them private.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use http::{auth_token, offered_protocols, parse_head, parse_query, Request, MAX_HEAD, MAX_HEADERS};

use crate::fanout::Broadcast;
use crate::registry::Registry;
use crate::socket_ids::SocketIds;

/// State shared by every connection of a server.
pub(crate) struct Shared {
    pub(crate) registry: Registry<Conn>,
    pub(crate) socket_ids: SocketIds<Conn>,
    pub(crate) outbound: outbound::Outbound,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) config: Config,
    /// `config.sockets`, shared by the connections of each socket.
    pub(crate) sockets: Vec<Arc<SocketConfig>>,
    pub(crate) next_conn_id: AtomicU64,
    /// How many connections were dropped for not reading (see `SocketConfig::slow_reader_timeout`).
    pub(crate) slow_readers: AtomicU64,
    pub(crate) connections: connections::Connections,
    pub(crate) sessions: longpoll::Sessions,
    /// Ends the connections whose peers vanished, in the engine's spare time.
    pub(crate) reaper: reaper::Reaper,
    /// Where young sessions move (see [`Server::start_with_intake`]); None when the
    /// server runs on one runtime.
    pub(crate) main: Option<tokio::runtime::Handle>,
    /// How many sessions moved there.
    pub(crate) promoted: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A running server. Dropping it does not stop it; call [`Server::stop`].
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
}

impl Server {
    /// Binds `config.addr` and `config.https`'s address (one of them at least) and
    /// starts accepting on `runtime`, where everything runs.
    pub fn start(runtime: &tokio::runtime::Handle, config: Config, handler: Arc<dyn Handler>) -> std::io::Result<Server> {
        Server::start_on(runtime, runtime, None, config, handler)
    }

    /// Like [`Server::start`], with what new connections cost kept off `runtime`:
    /// `intake` accepts, runs TLS handshakes and HTTP requests (long-poll included),
    /// and runs each WebSocket session for its first [`Config::young_for`] (or until
    /// it has been sent 32 frames or 64 KiB), then the session moves to `runtime` for the rest
    /// of its life; the connections whose clients vanish are ended on `intake` too
    /// (see `reaper.rs`). Give `intake` a thread of lower OS priority, and a storm of
    /// connections that come and go (a reconnect wave, a churn of resets) takes only
    /// the time the established connections leave: in the `churn` benchmark, the
    /// healthy subscribers' broadcast p99 went from 17-20 ms to 3-5 ms (1.3-2 ms
    /// without the churn) with waves of 2,000 connections dying at once.
    pub fn start_with_intake(
        runtime: &tokio::runtime::Handle,
        intake: &tokio::runtime::Handle,
        config: Config,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Server> {
        Server::start_on(runtime, intake, Some(runtime.clone()), config, handler)
    }

    fn start_on(
        runtime: &tokio::runtime::Handle,
        intake: &tokio::runtime::Handle,
        main: Option<tokio::runtime::Handle>,
        config: Config,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Server> {
        if config.addr.is_none() && config.https.is_none() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "neither an HTTP nor an HTTPS listener"));
        }
        // Both bound before either accepts: a port in use fails the start as a whole.
        let http = config.addr.map(bind).transpose()?;
        let https = config.https.as_ref().map(|https| bind(https.addr).map(|l| (l, TlsAcceptor::from(Arc::clone(&https.tls))))).transpose()?;
        let http_addr = http.as_ref().map(std::net::TcpListener::local_addr).transpose()?;
        let https_addr = https.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
        let sockets = config.sockets.iter().cloned().map(Arc::new).collect();
        let outbound = outbound::Outbound::default();
        let (registry, socket_ids) = (Registry::default(), SocketIds::default());
        let connections = connections::Connections::new();
        let next_conn_id = AtomicU64::new(1);
        let sessions = longpoll::Sessions::default();
        let (reaper, reap) = reaper::Reaper::new();
        let shared = Arc::new(Shared {
            registry,
            socket_ids,
            outbound,
            handler,
            config,
            sockets,
            next_conn_id,
            slow_readers: AtomicU64::new(0),
            connections,
            sessions,
            reaper,
            main,
            promoted: AtomicU64::new(0),
        });
        // The listeners register with the intake's reactor, so the connections they
        // accept do too.
        let guard = intake.enter();
        let listeners = http.map(|l| (l, Scheme::Http)).into_iter().chain(https.map(|(l, acceptor)| (l, Scheme::Https(acceptor))));
        for (listener, scheme) in listeners {
            intake.spawn(listener::run(tokio::net::TcpListener::from_std(listener)?, scheme, Arc::clone(&shared)));
        }
        drop(guard);
        intake.spawn(reap);
        runtime.spawn(outbound::run(Arc::clone(&shared)));
        Ok(Server { shared, http_addr, https_addr })
    }

    /// The address of the plain HTTP listener, or of the HTTPS one when there is no plain one.
    pub fn local_addr(&self) -> SocketAddr {
        self.http_addr.or(self.https_addr).expect("a server has a listener at least")
    }

    /// The address of the HTTPS listener, if there is one.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The topic registry (who is a member of which topic).
    pub fn registry(&self) -> &Registry<Conn> {
        &self.shared.registry
    }

    /// A handle on the server's registry that does not keep the server alive: what a
    /// PubSub server that several endpoints share holds of each.
    pub fn downgrade(&self) -> WeakServer {
        WeakServer(Arc::downgrade(&self.shared))
    }

    /// Broadcasts `event` with `body` to every subscriber of `topic` but the
    /// connection `exclude`, after everything `sender` sent before. The channels that
    /// intercept the event get no frame: each of their sinks is passed to `intercept`
    /// now, in the caller, for the application to hand them the payload itself; when
    /// more than `max_interceptors` would be, nothing is done and
    /// [`Broadcasted::TooManyInterceptors`] says how many (Fenix then repeats the call
    /// on a dirty scheduler). A message that a subscriber's serializer could not carry
    /// (a binary body with a topic or event over 255 bytes) is an error, and nothing is
    /// done: the fan-out encodes it later, when the caller could no longer be told.
    pub fn broadcast(
        &self,
        sender: Sender<'_>,
        message: &Broadcast<'_>,
        topic: &str,
        max_interceptors: usize,
        intercept: impl FnMut(&crate::Sink),
    ) -> Result<Broadcasted, crate::EncodeError> {
        crate::protocol::Serializer::V2.check_broadcast(topic, message.event, message.body)?;
        let registry = &self.shared.registry;
        let interceptors = registry.interceptor_count(topic, message.event);
        if interceptors > max_interceptors {
            return Ok(Broadcasted::TooManyInterceptors(interceptors));
        }
        if interceptors > 0 {
            // Handed to the caller once the registry is unlocked again.
            let mut sinks = Vec::with_capacity(interceptors);
            registry.interceptors(topic, message.event, message.exclude, &mut sinks);
            sinks.iter().for_each(intercept);
        }
        let (body, binary) = match message.body {
            crate::protocol::Body::Json(json) => (bytes::Bytes::copy_from_slice(json), false),
            crate::protocol::Body::Binary(data) => (bytes::Bytes::copy_from_slice(data), true),
        };
        let op = outbound::Op::Broadcast { topic: topic.to_owned(), event: message.event.to_owned(), body, binary, exclude: message.exclude };
        Ok(match self.shared.outbound.submit(sender, op, false) {
            outbound::Submitted::Queued(pace) => Broadcasted::Queued(pace),
            outbound::Submitted::RunNow(op) => {
                outbound::carry_out_one(op, &self.shared);
                Broadcasted::Queued(Pace::Go)
            }
        })
    }

    /// Starts a presence hub (one per presence module): every `tick`, each changed
    /// topic's diff goes where `route` says. Must be called from within the server's runtime.
    pub fn start_presence(&self, tick: std::time::Duration, limits: crate::presence::Limits, route: DiffRoute) -> Arc<PresenceHub> {
        use std::sync::atomic::Ordering;
        // Local pids' term bits end in 0b0011: a hub's sender id ends in 0b0000.
        static NEXT_HUB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT_HUB.fetch_add(1, Ordering::Relaxed);
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(n, |d| d.as_nanos() as u64);
        PresenceHub::start(Arc::clone(&self.shared), (1 << 63) | (n << 4), seed, tick, limits, route)
    }

    /// One step of a graceful drain: the server stops accepting (its port is released,
    /// upgrades get 503), and up to `batch` connections of the socket at `path` are
    /// closed with 1012 (Service Restart) after what is queued to them, so that their
    /// clients reconnect, to another server. Says what it closed and how many of the
    /// socket's connections are left to close; [`Server::stop`] closes whatever
    /// remains.
    pub fn drain(&self, path: &str, batch: usize) -> Drained {
        self.shared.connections.drain(path, batch)
    }

    /// How many connections are tracked now: from the upgrade asking the application
    /// until the session ends (see `Connections`).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.count()
    }

    /// How many connections were dropped so far because their clients did not read.
    pub fn slow_readers_dropped(&self) -> u64 {
        self.shared.slow_readers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many sessions moved from the intake runtime to the main one so far.
    pub fn sessions_promoted(&self) -> u64 {
        self.shared.promoted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many senders have sends waiting or being carried out.
    pub fn busy_senders(&self) -> usize {
        self.shared.outbound.lane_count()
    }

    /// Stops the server for good, as when the application that runs its callbacks is
    /// gone: the listener stops and releases the port (soon after, on an engine thread),
    /// upgrades waiting for an answer get 503, and every connection is closed with 1012
    /// (Service Restart) after what is already queued to it, so that clients reconnect,
    /// to a new server on the same port once there is one. Never blocks; calling it
    /// again does nothing.
    pub fn stop(&self) {
        let closed = self.shared.connections.stop();
        if closed > 0 {
            tracing::info!(addr = %self.local_addr(), connections = closed, "server stopped: connections closed with 1012");
        }
    }
}

/// A server seen from outside, without keeping it alive (see [`Server::downgrade`]).
#[derive(Debug, Clone)]
pub struct WeakServer(std::sync::Weak<Shared>);

impl WeakServer {
    /// Runs `f` on the server's registry, unless the server is gone.
    pub fn with_registry<R>(&self, f: impl FnOnce(&Registry<Conn>) -> R) -> Option<R> {
        self.0.upgrade().map(|shared| f(&shared.registry))
    }
}

/// A listening socket, bound and non-blocking for tokio.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// What a listener's connections speak.
pub(crate) enum Scheme {
    Http,
    /// TLS first: the handshake runs in the connection's task.
    Https(TlsAcceptor),
}

/// What [`Server::broadcast`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcasted {
    /// Queued behind the sender's earlier sends.
    Queued(Pace),
    /// Not done: this many channels intercept the event.
    TooManyInterceptors(usize),
}
