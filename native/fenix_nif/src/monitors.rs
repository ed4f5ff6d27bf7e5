//! Processes watched on behalf of an engine table (presence entries, PubSub
//! subscriptions): a process is monitored once, however much it adds, and when it goes
//! down, for any reason, the table's `on_down` runs once with its id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use rustler::{Env, LocalPid, Monitor, Resource, ResourceArc};

use crate::sender;

/// The watched processes of one table.
pub(crate) struct Monitors {
    /// Pid id -> its monitor's resource (the monitor lives as long as it does).
    watched: Mutex<HashMap<u64, ResourceArc<Watched>>>,
    on_down: Box<dyn Fn(u64) + Send + Sync>,
}

impl std::fmt::Debug for Monitors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Monitors")
    }
}

/// One watched process.
#[derive(Debug)]
pub(crate) struct Watched {
    monitors: Weak<Monitors>,
    id: u64,
}

#[rustler::resource_impl]
impl Resource for Watched {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        if let Some(monitors) = self.monitors.upgrade() {
            monitors.watched.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
            (monitors.on_down)(self.id);
        }
    }
}

impl Monitors {
    /// Watches for `on_down(id)` to be called when a watched process goes down.
    pub(crate) fn new(on_down: impl Fn(u64) + Send + Sync + 'static) -> Arc<Monitors> {
        Arc::new(Monitors { watched: Mutex::default(), on_down: Box::new(on_down) })
    }

    /// Watches `pid` (a no-op if it already is). A process that is already gone gets
    /// its `on_down` at once: what it just added is taken away again.
    pub(crate) fn watch(self: &Arc<Self>, env: Env<'_>, pid: LocalPid) {
        let id = sender::id(env, pid);
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if watched.contains_key(&id) {
            return;
        }
        let process = ResourceArc::new(Watched { monitors: Arc::downgrade(self), id });
        if env.monitor(&process, &pid).is_some() {
            watched.insert(id, process);
        } else {
            drop(watched);
            (self.on_down)(id);
        }
    }
}
