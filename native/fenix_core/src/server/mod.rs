//! The tokio server: HTTP/1.1, the WebSocket upgrade, and one session task per connection.
//!
//! Data flow: [`listener`] accepts TCP connections and spawns a task per connection;
//! [`http`] reads the request head and routes it (WebSocket upgrade at
//! `<socket path>/websocket`, static files, 404). An upgrade asks the application's
//! [`Handler::connect`](crate::Handler::connect) and waits for its answer, then
//! [`session`] runs the connection: the reader parses frames and hands messages to the
//! [`Conn`] state machine, the writer drains the [`Conn`]'s outbox with vectored writes.
//!
//! Tested in `tests/server.rs` with a real WebSocket client against a plain-Rust handler.

mod config;
mod conn;
mod http;
mod listener;
mod outbound;
mod outbox;
mod session;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use config::{Config, SocketConfig};
pub use conn::{Conn, JoinError, JoinRef};

use crate::handler::Handler;
use crate::registry::Registry;

/// State shared by every connection of a server.
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) outbound: outbound::Outbound,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) config: Config,
    /// `config.sockets`, shared by the connections of each socket.
    pub(crate) sockets: Vec<Arc<SocketConfig>>,
    pub(crate) next_conn_id: AtomicU64,
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
    local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Server {
    /// Binds `config.addr` and starts accepting on `runtime`.
    pub fn start(runtime: &tokio::runtime::Handle, config: Config, handler: Arc<dyn Handler>) -> std::io::Result<Server> {
        let listener = std::net::TcpListener::bind(config.addr)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let sockets = config.sockets.iter().cloned().map(Arc::new).collect();
        let (outbound, ops) = outbound::Outbound::new();
        let registry = Registry::default();
        let shared = Arc::new(Shared { registry, outbound, handler, config, sockets, next_conn_id: AtomicU64::new(1) });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        runtime.spawn(listener::run(listener, Arc::clone(&shared), stopped));
        runtime.spawn(outbound::run(ops, Arc::clone(&shared)));
        Ok(Server { shared, local_addr, stop })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The topic registry (for broadcasts).
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Broadcasts `event` with `body` to every subscriber of `topic` but the
    /// connection `exclude`, after everything submitted before. Channels that intercept
    /// the event get nothing: hand them the payload with [`Registry::intercepting`] first.
    pub fn broadcast(&self, topic: &str, event: &str, body: crate::protocol::Body<'_>, exclude: Option<u64>) -> crate::Result<()> {
        Ok(self.shared.outbound.broadcast(topic, event, body, exclude)?)
    }

    /// Stops accepting connections. Open connections stay until they close.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}
