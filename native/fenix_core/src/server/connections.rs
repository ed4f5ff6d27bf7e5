//! The live connections of a server, so that stopping it reaches every one of them.
//!
//! A connection is tracked from the moment its upgrade asks the application until its
//! session ends (the [`Tracked`] guard is dropped, also when the task panics). Stopping
//! the server ([`Connections::stop`]) is final: the listener returns (which releases the
//! port), upgrades still waiting for the application are answered 503, every accepted
//! connection is closed with 1012 (Service Restart, so that clients reconnect), and
//! connections that arrive later are answered 503. A drain ([`Connections::drain`])
//! stops accepting the same way, then closes the connections a batch at a time (1012
//! too), so that clients reconnect elsewhere without all coming at once.
//!
//! It also bounds them: at most [`Config::max_connections`](super::Config) in all and
//! [`Config::max_connections_per_address`](super::Config) from one remote address; an
//! upgrade beyond either is answered 503 before the application is asked, so a storm of
//! connections from one address costs the others nothing.
//!
//! Connections are kept as `Weak` references: a connection points to the server's shared
//! state, so a strong one here would be a cycle.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::watch;

use super::conn::Conn;
use super::Shared;
use crate::sink::Sink;
use crate::websocket::CloseCode;

/// The reason sent with the close frame of a stop.
const STOP_REASON: &str = "server restart";

/// The reason sent with the close frame of a drain.
const DRAIN_REASON: &str = "server draining";

/// A server's live connections and whether it is stopping.
#[derive(Debug)]
pub(crate) struct Connections {
    live: Mutex<Live>,
    stopping: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Live {
    /// Set once (by a stop or the first drain), under the same lock as `conns`: a
    /// connection is either tracked before (and closed by the stop or a drain) or
    /// refused by `track`, never missed.
    stopping: bool,
    /// Set once by the stop: a second stop does nothing.
    stopped: bool,
    conns: HashMap<u64, Weak<Conn>>,
    /// The connections a drain has closed, until their sessions end.
    drained: HashSet<u64>,
    /// Tracked connections by remote address (an address with none has no entry).
    per_address: HashMap<IpAddr, usize>,
}

/// Why [`Connections::track`] did not track a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server is stopping.
    Stopping,
    /// It has `max_connections` already.
    Full,
    /// The connection's address has `max_connections_per_address` already.
    AddressFull,
}

impl Connections {
    pub(crate) fn new() -> Connections {
        Connections { live: Mutex::default(), stopping: watch::Sender::new(false) }
    }

    /// Tracks `conn`, from `address`, until the returned guard is dropped; refused when
    /// the server is stopping or a limit is reached.
    pub(crate) fn track(shared: &Arc<Shared>, conn: &Arc<Conn>, address: IpAddr) -> Result<Tracked, Refusal> {
        let config = &shared.config;
        let mut live = shared.connections.lock();
        if live.stopping {
            return Err(Refusal::Stopping);
        }
        if live.conns.len() >= config.max_connections {
            return Err(Refusal::Full);
        }
        let from_address = live.per_address.entry(address).or_insert(0);
        if *from_address >= config.max_connections_per_address {
            return Err(Refusal::AddressFull);
        }
        *from_address += 1;
        live.conns.insert(conn.id(), Arc::downgrade(conn));
        Ok(Tracked { shared: Arc::clone(shared), id: conn.id(), address })
    }

    /// How many connections are tracked.
    pub(crate) fn count(&self) -> usize {
        self.lock().conns.len()
    }

    /// Resolves once the server is stopping (at once if it already is).
    pub(crate) async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        // The sender lives as long as `self`, which outlives this future.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Stops the server: see the module docs. Returns how many connections were closed;
    /// a second call does nothing and returns 0.
    pub(crate) fn stop(&self) -> usize {
        let conns = {
            let mut live = self.lock();
            if live.stopped {
                return 0;
            }
            live.stopping = true;
            live.stopped = true;
            let drained = std::mem::take(&mut live.drained);
            let mut conns = std::mem::take(&mut live.conns);
            conns.retain(|id, _| !drained.contains(id));
            conns
        };
        self.stopping.send_replace(true);
        let conns: Vec<Arc<Conn>> = conns.into_values().filter_map(|conn| conn.upgrade()).collect();
        // After what is already queued: replies the channels sent before the stop still arrive.
        conns.iter().for_each(|conn| conn.close(CloseCode::ServiceRestart, STOP_REASON));
        conns.len()
    }

    /// One step of a drain: stops accepting, as [`Connections::stop`] does, then closes
    /// up to `batch` of the open connections of the socket at `path` with 1012, after
    /// what is already queued to them. Returns what it closed, and how many of that
    /// socket's connections are still open and not yet closed by a drain.
    pub(crate) fn drain(&self, path: &str, batch: usize) -> Drained {
        let (closing, left) = {
            let mut live = self.lock();
            live.stopping = true;
            let Live { conns, drained, .. } = &mut *live;
            let open = conns.iter().filter(|(id, _)| !drained.contains(id));
            let of_socket: Vec<(u64, Arc<Conn>)> =
                open.filter_map(|(id, conn)| conn.upgrade().map(|conn| (*id, conn))).filter(|(_, conn)| conn.config().path == path).collect();
            let left = of_socket.len().saturating_sub(batch);
            let closing: Vec<Arc<Conn>> = of_socket.into_iter().take(batch).map(|(id, conn)| {
                drained.insert(id);
                conn
            }).collect();
            (closing, left)
        };
        self.stopping.send_replace(true);
        let channels = closing.iter().flat_map(|conn| conn.channel_sinks()).collect();
        closing.iter().for_each(|conn| conn.close(CloseCode::ServiceRestart, DRAIN_REASON));
        Drained { closed: closing.len(), left, channels }
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        // Every change is one insert or remove: a panic elsewhere cannot leave it half-made.
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One step of a drain.
#[derive(Debug)]
pub struct Drained {
    /// How many connections it closed.
    pub closed: usize,
    /// How many of the socket's connections are left to close.
    pub left: usize,
    /// The joined channels of the connections it closed: they are told, and end.
    pub channels: Vec<Sink>,
}

/// Keeps a connection tracked; dropping it untracks the connection.
#[derive(Debug)]
pub(crate) struct Tracked {
    shared: Arc<Shared>,
    id: u64,
    address: IpAddr,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut live = self.shared.connections.lock();
        live.conns.remove(&self.id);
        live.drained.remove(&self.id);
        if let Some(count) = live.per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                live.per_address.remove(&self.address);
            }
        }
    }
}
