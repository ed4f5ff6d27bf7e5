//! Starting and stopping an endpoint's server, and the defaults of its options.
//!
//! Every option may be left out (`nil`): the default is then the engine's own
//! (`Config::default`, `SocketConfig::new`), the one place each default is written.
//! `endpoint_defaults/0` reports them, for the documentation of `Fenix.Endpoint` and
//! `Fenix.Socket`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fenix_core::server::{CipherSuite, Config, HttpsConfig, LongPollConfig, Server, SocketConfig, SocketKind};
use rustler::{Encoder, Env, LocalPid, NifMap, ResourceArc, Term};

use super::error;
use crate::atoms;
use crate::beam::{ChannelProcess, Dispatcher, TransportProcess};
use crate::pubsub::PubSubResource;
use crate::resources::EndpointResource;
use crate::runtime;

#[derive(NifMap)]
struct EndpointOptions {
    /// Whether there is a plain HTTP listener (at `ip`, `port`).
    http: bool,
    ip: Option<String>,
    port: Option<u16>,
    https: Option<HttpsOptions>,
    static_dir: Option<String>,
    engine_threads: Option<usize>,
    tune_allocator: Option<bool>,
    head_timeout: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    sockets: Vec<SocketOptions>,
    /// The endpoint's PubSub server (`pubsub_server:`), or nil.
    pubsub: Option<ResourceArc<PubSubResource>>,
}

/// The `https:` listener; the paths are absolute (Fenix.Endpoint resolves them).
#[derive(NifMap)]
struct HttpsOptions {
    ip: Option<String>,
    port: Option<u16>,
    certfile: String,
    keyfile: String,
    /// `"strong"`, `"compatible"`, or nil for rustls's defaults.
    cipher_suite: Option<String>,
}

/// The HTTPS listener's port when none is given: Plug.Cowboy's and Bandit's.
const DEFAULT_HTTPS_PORT: u16 = 4040;

impl HttpsOptions {
    fn config(&self, default_ip: IpAddr) -> Result<HttpsConfig, String> {
        let ip = parse_ip(self.ip.as_deref(), default_ip).ok_or("invalid https ip")?;
        let cipher_suite = match self.cipher_suite.as_deref() {
            None => CipherSuite::Default,
            Some(name) => CipherSuite::from_name(name).ok_or_else(|| format!("unknown cipher_suite {name}"))?,
        };
        let tls = HttpsConfig::server_config(self.certfile.as_ref(), self.keyfile.as_ref(), cipher_suite).map_err(|e| e.to_string())?;
        Ok(HttpsConfig { addr: SocketAddr::new(ip, self.port.unwrap_or(DEFAULT_HTTPS_PORT)), tls })
    }
}

fn parse_ip(ip: Option<&str>, default: IpAddr) -> Option<IpAddr> {
    ip.map_or(Some(default), |ip| ip.parse().ok())
}

#[derive(NifMap)]
struct SocketOptions {
    path: String,
    /// A `Fenix.Socket.Transport` (raw messages) rather than a `Fenix.Socket`.
    raw: bool,
    timeout: Option<u64>,
    max_frame_size: Option<usize>,
    max_channels: Option<usize>,
    outbox_capacity: Option<usize>,
    outbox_capacity_bytes: Option<usize>,
    max_unhandled_messages: Option<usize>,
    max_unhandled_bytes: Option<usize>,
    connect_timeout: Option<u64>,
    frame_timeout: Option<u64>,
    slow_reader_timeout: Option<u64>,
    max_messages_per_second: Option<usize>,
    max_joins_per_second: Option<usize>,
    /// nil: no long-poll transport.
    longpoll: Option<LongPollOptions>,
}

#[derive(NifMap)]
struct LongPollOptions {
    window_ms: Option<u64>,
    max_body_size: Option<usize>,
}

impl From<LongPollOptions> for LongPollConfig {
    fn from(o: LongPollOptions) -> Self {
        let defaults = LongPollConfig::default();
        LongPollConfig {
            window: o.window_ms.map_or(defaults.window, Duration::from_millis),
            max_body_size: o.max_body_size.unwrap_or(defaults.max_body_size),
        }
    }
}

impl From<SocketOptions> for SocketConfig {
    fn from(o: SocketOptions) -> Self {
        let defaults = SocketConfig::new(o.path);
        SocketConfig {
            kind: if o.raw { SocketKind::Raw } else { SocketKind::Channels },
            timeout: o.timeout.map_or(defaults.timeout, Duration::from_millis),
            max_frame_size: o.max_frame_size.unwrap_or(defaults.max_frame_size),
            max_channels: o.max_channels.unwrap_or(defaults.max_channels),
            outbox_capacity: o.outbox_capacity.unwrap_or(defaults.outbox_capacity),
            outbox_capacity_bytes: o.outbox_capacity_bytes.unwrap_or(defaults.outbox_capacity_bytes),
            max_unhandled_messages: o.max_unhandled_messages.unwrap_or(defaults.max_unhandled_messages),
            max_unhandled_bytes: o.max_unhandled_bytes.unwrap_or(defaults.max_unhandled_bytes),
            connect_timeout: o.connect_timeout.map_or(defaults.connect_timeout, Duration::from_millis),
            frame_timeout: o.frame_timeout.map_or(defaults.frame_timeout, Duration::from_millis),
            slow_reader_timeout: o.slow_reader_timeout.map_or(defaults.slow_reader_timeout, Duration::from_millis),
            max_messages_per_second: o.max_messages_per_second.or(defaults.max_messages_per_second),
            max_joins_per_second: o.max_joins_per_second.unwrap_or(defaults.max_joins_per_second),
            longpoll: o.longpoll.map(LongPollConfig::from),
            ..defaults
        }
    }
}

/// Starts a server whose connects and joins go to `dispatcher`, and that lives only as
/// long as `dispatcher` does: when it exits, for any reason, the server stops (see
/// `EndpointResource`). Returns `{:ok, endpoint}`, `{:error, :eaddrinuse}` (worth a
/// retry when the previous server of the port is still letting go of it),
/// `{:error, :invalid_config}`, `{:error, {:tls, text}}` (a certificate or key that
/// cannot be used, an unknown cipher suite) or `{:error, {:bind_failed, text}}`.
/// Reading the certificate and key is file I/O: it runs on a dirty scheduler.
#[rustler::nif(schedule = "DirtyIo")]
fn endpoint_start(env: Env<'_>, dispatcher: LocalPid, options: EndpointOptions) -> Term<'_> {
    let defaults = Config::default();
    let default_addr = defaults.addr.expect("the default config has an HTTP listener");
    let Some(ip) = parse_ip(options.ip.as_deref(), default_addr.ip()) else {
        return error(env, atoms::invalid_config());
    };
    let https = match options.https.as_ref().map(|https| https.config(ip)).transpose() {
        Ok(https) => https,
        Err(text) => return (atoms::error(), (atoms::tls(), text)).encode(env),
    };
    let config = Config {
        addr: options.http.then(|| SocketAddr::new(ip, options.port.unwrap_or(default_addr.port()))),
        https,
        sockets: options.sockets.into_iter().map(SocketConfig::from).collect(),
        static_dir: options.static_dir.map(PathBuf::from),
        head_timeout: options.head_timeout.map_or(defaults.head_timeout, Duration::from_millis),
        max_connections: options.max_connections.unwrap_or(defaults.max_connections),
        max_connections_per_address: options.max_connections_per_address.unwrap_or(defaults.max_connections_per_address),
        ..defaults
    };
    if options.tune_allocator.unwrap_or(runtime::DEFAULT_TUNE_ALLOCATOR) {
        runtime::tune_allocator();
    }
    let runtime = runtime::get(options.engine_threads.unwrap_or(runtime::DEFAULT_THREADS));
    let intake = runtime::intake();
    let server = match Server::start_with_intake(runtime.handle(), intake.handle(), config, Arc::new(Dispatcher { pid: dispatcher })) {
        Ok(server) => server,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return error(env, atoms::eaddrinuse()),
        Err(e) => return (atoms::error(), (atoms::bind_failed(), e.to_string())).encode(env),
    };
    if let Some(pubsub) = &options.pubsub {
        pubsub.attach(&server);
    }
    let endpoint = ResourceArc::new(EndpointResource { server, pubsub: options.pubsub });
    if env.monitor(&endpoint, &dispatcher).is_none() {
        // The dispatcher is already gone: nobody would answer this server.
        endpoint.server.stop();
        return error(env, atoms::noproc());
    }
    (atoms::ok(), endpoint).encode(env)
}

/// The port the endpoint listens on (useful with port 0): the HTTP listener's, or the
/// HTTPS one's when there is no HTTP listener.
#[rustler::nif]
fn endpoint_port(endpoint: ResourceArc<EndpointResource>) -> u16 {
    endpoint.server.local_addr().port()
}

/// The port of the HTTPS listener, or nil.
#[rustler::nif]
fn endpoint_https_port(endpoint: ResourceArc<EndpointResource>) -> Option<u16> {
    endpoint.server.https_addr().map(|addr| addr.port())
}

/// Stops the server: the port is released and every connection is closed with 1012.
#[rustler::nif]
fn endpoint_stop(endpoint: ResourceArc<EndpointResource>) -> rustler::Atom {
    endpoint.server.stop();
    atoms::ok()
}

/// One step of a graceful drain (see `Server::drain`): stops accepting, closes up to
/// `batch` connections of the socket at `path` with 1012: `{closed, left, pids}`, the
/// pids of the closed connections' channel processes, or of their transport processes
/// for a raw socket (which are told, and stop).
#[rustler::nif]
fn endpoint_drain(endpoint: ResourceArc<EndpointResource>, path: &str, batch: usize) -> (usize, usize, Vec<LocalPid>) {
    let drained = endpoint.server.drain(path, batch);
    let channels = drained.channels.iter().filter_map(|sink| sink.as_any().downcast_ref::<ChannelProcess>().map(|p| p.pid));
    let transports = drained.transports.iter().filter_map(|sink| sink.as_any().downcast_ref::<TransportProcess>().map(|p| p.pid));
    let pids = channels.chain(transports).collect();
    (drained.closed, drained.left, pids)
}

/// Statistics: `{topics_with_subscribers, subscribers_of(topic)}`.
#[rustler::nif]
fn endpoint_subscribers(endpoint: ResourceArc<EndpointResource>, topic: &str) -> (usize, usize) {
    endpoint.server.registry().counts(topic)
}

/// Sends the engine's log events to `pid` (as `{:fenix_log, level, message}`).
#[rustler::nif]
fn endpoint_log_to(pid: LocalPid) -> rustler::Atom {
    crate::log::set_target(pid);
    atoms::ok()
}

#[derive(NifMap)]
struct EndpointDefaults {
    ip: String,
    port: u16,
    https_port: u16,
    engine_threads: usize,
    tune_allocator: bool,
    head_timeout: u64,
    max_connections: usize,
    max_connections_per_address: usize,
    socket: SocketDefaults,
}

#[derive(NifMap)]
struct SocketDefaults {
    timeout: u64,
    max_frame_size: usize,
    max_channels: usize,
    outbox_capacity: usize,
    outbox_capacity_bytes: usize,
    max_unhandled_messages: usize,
    max_unhandled_bytes: usize,
    connect_timeout: u64,
    frame_timeout: u64,
    slow_reader_timeout: u64,
    max_messages_per_second: Option<usize>,
    max_joins_per_second: usize,
    /// What a socket with `longpoll: true` gets.
    longpoll: LongPollDefaults,
}

#[derive(NifMap)]
struct LongPollDefaults {
    window_ms: u64,
    max_body_size: usize,
}

/// What `endpoint_start` uses for each option left out, with durations in ms.
#[rustler::nif]
fn endpoint_defaults() -> EndpointDefaults {
    let config = Config::default();
    let socket = SocketConfig::new("");
    let longpoll = LongPollConfig::default();
    let addr = config.addr.expect("the default config has an HTTP listener");
    EndpointDefaults {
        ip: addr.ip().to_string(),
        port: addr.port(),
        https_port: DEFAULT_HTTPS_PORT,
        engine_threads: runtime::DEFAULT_THREADS,
        tune_allocator: runtime::DEFAULT_TUNE_ALLOCATOR,
        head_timeout: duration_ms(config.head_timeout),
        max_connections: config.max_connections,
        max_connections_per_address: config.max_connections_per_address,
        socket: SocketDefaults {
            timeout: duration_ms(socket.timeout),
            max_frame_size: socket.max_frame_size,
            max_channels: socket.max_channels,
            outbox_capacity: socket.outbox_capacity,
            outbox_capacity_bytes: socket.outbox_capacity_bytes,
            max_unhandled_messages: socket.max_unhandled_messages,
            max_unhandled_bytes: socket.max_unhandled_bytes,
            connect_timeout: duration_ms(socket.connect_timeout),
            frame_timeout: duration_ms(socket.frame_timeout),
            slow_reader_timeout: duration_ms(socket.slow_reader_timeout),
            max_messages_per_second: socket.max_messages_per_second,
            max_joins_per_second: socket.max_joins_per_second,
            longpoll: LongPollDefaults { window_ms: duration_ms(longpoll.window), max_body_size: longpoll.max_body_size },
        },
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
