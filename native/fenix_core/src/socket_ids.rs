//! Socket ids (Phoenix's `id/1`): a broadcast of `disconnect` to a socket id closes
//! every connection with that id, so that a user logged out everywhere reconnects
//! (and is authenticated again).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use dashmap::DashMap;

/// The event that, broadcast to a socket id, disconnects that socket's connections.
pub const DISCONNECT_EVENT: &str = "disconnect";

/// Socket id -> its live connections, by connection id.
#[derive(Debug)]
pub struct SocketIds<C> {
    ids: DashMap<String, HashMap<u64, Weak<C>>>,
}

impl<C> Default for SocketIds<C> {
    fn default() -> Self {
        SocketIds { ids: DashMap::new() }
    }
}

impl<C> SocketIds<C> {
    /// Registers connection `conn_id` under `id`.
    pub fn register(&self, id: &str, conn_id: u64, conn: &Arc<C>) {
        self.ids.entry(id.to_owned()).or_default().insert(conn_id, Arc::downgrade(conn));
    }

    /// Removes connection `conn_id` from `id`.
    pub fn unregister(&self, id: &str, conn_id: u64) {
        self.ids.remove_if_mut(id, |_, conns| {
            conns.remove(&conn_id);
            conns.is_empty()
        });
    }

    /// The live connections of `id`.
    pub fn connections(&self, id: &str) -> Vec<Arc<C>> {
        self.ids.get(id).map_or_else(Vec::new, |conns| conns.values().filter_map(Weak::upgrade).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_live_connections_of_an_id() {
        let ids = SocketIds::default();
        let (a, b) = (Arc::new("a"), Arc::new("b"));
        ids.register("user:1", 1, &a);
        ids.register("user:1", 2, &b);
        ids.register("user:2", 3, &a);
        assert_eq!(ids.connections("user:1").len(), 2);
        drop(b);
        assert_eq!(ids.connections("user:1").len(), 1, "a dropped connection is not found");
        ids.unregister("user:1", 1);
        ids.unregister("user:1", 2);
        assert!(ids.connections("user:1").is_empty());
        assert_eq!(ids.ids.len(), 1, "an id without connections is removed");
    }
}
