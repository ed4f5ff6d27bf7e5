//! Resources: the handles Elixir holds on engine objects.

use std::sync::Arc;

use fenix_core::server::{Channel, Conn, RawTransport, Server};
use rustler::{Env, LocalPid, Monitor, Resource, ResourceArc};

use crate::pubsub::PubSubResource;

/// A running endpoint server. Its dispatcher process is monitored: the server lives
/// only as long as the process that answers its connects and joins.
pub(crate) struct EndpointResource {
    pub(crate) server: Server,
    /// The PubSub server of the endpoint's `pubsub_server` config, if it has one.
    pub(crate) pubsub: Option<ResourceArc<PubSubResource>>,
}

impl std::fmt::Debug for EndpointResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointResource").field("server", &self.server).field("pubsub", &self.pubsub.is_some()).finish()
    }
}

#[rustler::resource_impl]
impl Resource for EndpointResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        // Its connections would wait for answers that never come: close them (1012), so
        // that clients reconnect to the dispatcher's successor.
        self.server.stop();
    }
}

/// A connection, as handed to the dispatcher for connect and join.
#[derive(Debug)]
pub(crate) struct ConnResource(pub(crate) Arc<Conn>);

#[rustler::resource_impl]
impl Resource for ConnResource {}

/// A joined channel: the handle its process pushes and replies through. The process
/// is monitored: if it dies without closing the channel, the client gets `phx_error`.
#[derive(Debug)]
pub(crate) struct ChannelResource(pub(crate) Arc<Channel>);

#[rustler::resource_impl]
impl Resource for ChannelResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, env: Env<'a>, pid: LocalPid, _monitor: Monitor) {
        // A no-op when the channel closed itself first (phx_close already sent). The
        // phx_error goes after whatever the dead process still had waiting.
        crate::sender::with_pid(env, pid, |sender| self.0.crashed(sender));
    }
}

/// A raw connection's transport: the handle its process pushes through. The process is
/// monitored: if it dies without closing the connection, the client gets 1011.
#[derive(Debug)]
pub(crate) struct TransportResource(pub(crate) Arc<RawTransport>);

#[rustler::resource_impl]
impl Resource for TransportResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, env: Env<'a>, pid: LocalPid, _monitor: Monitor) {
        // A no-op when the process closed the connection first (its close is queued);
        // the 1011 goes after whatever the dead process still had waiting.
        crate::sender::with_pid(env, pid, |sender| self.0.crashed(sender));
    }
}
