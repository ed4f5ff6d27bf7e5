//! The live connections of a server, so that stopping it reaches every one of them.
//!
//! A connection is tracked from the moment its upgrade asks the application until its
//! session ends (the [`Tracked`] guard is dropped, also when the task panics). Stopping
//! the server ([`Connections::stop`]) is final: the listener returns (which releases the
//! port), upgrades still waiting for the application are answered 503, every accepted
//! connection is closed with 1012 (Service Restart, so that clients reconnect), and
//! connections that arrive later are answered 503.
//!
//! Connections are kept as `Weak` references: a connection points to the server's shared
//! state, so a strong one here would be a cycle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::watch;

use super::conn::Conn;
use super::Shared;
use crate::websocket::CloseCode;

/// The reason sent with the close frame of a stop.
const STOP_REASON: &str = "server restart";

/// A server's live connections and whether it is stopping.
#[derive(Debug)]
pub(crate) struct Connections {
    live: Mutex<Live>,
    stopping: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Live {
    /// Set once, under the same lock as `conns`: a connection is either tracked before
    /// the stop (and closed by it) or refused by `track`, never missed.
    stopping: bool,
    conns: HashMap<u64, Weak<Conn>>,
}

impl Connections {
    pub(crate) fn new() -> Connections {
        Connections { live: Mutex::default(), stopping: watch::Sender::new(false) }
    }

    /// Tracks `conn` until the returned guard is dropped; `None` if the server is stopping.
    pub(crate) fn track(shared: &Arc<Shared>, conn: &Arc<Conn>) -> Option<Tracked> {
        let mut live = shared.connections.lock();
        if live.stopping {
            return None;
        }
        live.conns.insert(conn.id(), Arc::downgrade(conn));
        Some(Tracked { shared: Arc::clone(shared), id: conn.id() })
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
            if live.stopping {
                return 0;
            }
            live.stopping = true;
            std::mem::take(&mut live.conns)
        };
        self.stopping.send_replace(true);
        let conns: Vec<Arc<Conn>> = conns.into_values().filter_map(|conn| conn.upgrade()).collect();
        // After what is already queued: replies the channels sent before the stop still arrive.
        conns.iter().for_each(|conn| conn.close(CloseCode::ServiceRestart, STOP_REASON));
        conns.len()
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        // Every change is one insert or remove: a panic elsewhere cannot leave it half-made.
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps a connection tracked; dropping it untracks the connection.
#[derive(Debug)]
pub(crate) struct Tracked {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.shared.connections.lock().conns.remove(&self.id);
    }
}
