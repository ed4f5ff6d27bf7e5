//! Starting and stopping an endpoint's server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fenix_core::server::{Config, Server, SocketConfig};
use rustler::{Encoder, Env, LocalPid, NifMap, ResourceArc, Term};

use super::error;
use crate::atoms;
use crate::beam::Dispatcher;
use crate::resources::EndpointResource;
use crate::runtime;

#[derive(NifMap)]
struct EndpointOptions {
    ip: String,
    port: u16,
    static_dir: Option<String>,
    engine_threads: usize,
    sockets: Vec<SocketOptions>,
}

#[derive(NifMap)]
struct SocketOptions {
    path: String,
    timeout: u64,
    max_frame_size: usize,
    max_channels: usize,
    outbox_capacity: usize,
    connect_timeout: u64,
}

impl From<SocketOptions> for SocketConfig {
    fn from(o: SocketOptions) -> Self {
        SocketConfig {
            timeout: Duration::from_millis(o.timeout),
            max_frame_size: o.max_frame_size,
            max_channels: o.max_channels,
            outbox_capacity: o.outbox_capacity,
            connect_timeout: Duration::from_millis(o.connect_timeout),
            ..SocketConfig::new(o.path)
        }
    }
}

/// Starts a server whose connects and joins go to `dispatcher`.
/// Returns `{:ok, endpoint}` or `{:error, {:bind_failed, text}}`.
#[rustler::nif]
fn endpoint_start(env: Env<'_>, dispatcher: LocalPid, options: EndpointOptions) -> Term<'_> {
    let Ok(ip) = options.ip.parse::<std::net::IpAddr>() else {
        return error(env, atoms::invalid_config());
    };
    let config = Config {
        addr: SocketAddr::new(ip, options.port),
        sockets: options.sockets.into_iter().map(SocketConfig::from).collect(),
        static_dir: options.static_dir.map(PathBuf::from),
    };
    let runtime = runtime::get(options.engine_threads);
    match Server::start(runtime.handle(), config, Arc::new(Dispatcher { pid: dispatcher })) {
        Ok(server) => (atoms::ok(), ResourceArc::new(EndpointResource { server })).encode(env),
        Err(e) => (atoms::error(), (atoms::bind_failed(), e.to_string())).encode(env),
    }
}

/// The port the endpoint listens on (useful with port 0).
#[rustler::nif]
fn endpoint_port(endpoint: ResourceArc<EndpointResource>) -> u16 {
    endpoint.server.local_addr().port()
}

/// Stops accepting connections.
#[rustler::nif]
fn endpoint_stop(endpoint: ResourceArc<EndpointResource>) -> rustler::Atom {
    endpoint.server.stop();
    atoms::ok()
}

/// Statistics: `{topics_with_subscribers, subscribers_of(topic)}`.
#[rustler::nif]
fn endpoint_subscribers(endpoint: ResourceArc<EndpointResource>, topic: &str) -> (usize, usize) {
    let registry = endpoint.server.registry();
    (registry.topic_count(), registry.subscriber_count(topic))
}

/// Sends the engine's log events to `pid` (as `{:fenix_log, level, message}`).
#[rustler::nif]
fn endpoint_log_to(pid: LocalPid) -> rustler::Atom {
    crate::log::set_target(pid);
    atoms::ok()
}
