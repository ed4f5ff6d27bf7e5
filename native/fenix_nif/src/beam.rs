//! The engine's callbacks, turned into messages to BEAM processes.
//!
//! Connects and joins go to the endpoint's dispatcher process; everything for a joined
//! channel goes straight to the channel's process, and everything for a raw
//! connection to its transport process. These run on engine (tokio)
//! threads, which send through a reused per-thread `OwnedEnv`.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use fenix_core::protocol::{Event, Message, Serializer};
use fenix_core::server::{Conn, TransportKind};
use fenix_core::{
    ChannelEvent, ChannelSink, ClosedReason, ConnectRequest, ControlKind, DataKind, Handler, JoinRequest, TransportClosed,
    TransportEvent, TransportSink,
};
use rustler::{Encoder, Env, LocalPid, OwnedEnv, ResourceArc, Term};

use crate::atoms;
use crate::client_ref::RefTerm;
use crate::resources::{ChannelResource, ConnResource, TransportResource};
use crate::term::{binary, payload_to_term};

thread_local! {
    static ENV: RefCell<OwnedEnv> = RefCell::new(OwnedEnv::new());
}

/// Sends the term built by `message` to `pid`. Meant for engine threads; called on a
/// BEAM scheduler thread (where an `OwnedEnv` may not send: a NIF call whose core call
/// hands a replaced channel its notice, or asks for a join held meanwhile), the send
/// is handed to an engine thread.
pub(crate) fn send(pid: &LocalPid, message: impl for<'a> FnOnce(Env<'a>) -> Term<'a> + Send + 'static) {
    if rustler::thread::is_scheduler_thread() {
        let pid = *pid;
        crate::runtime::current().spawn(async move { send(&pid, message) });
        return;
    }
    ENV.with(|env| {
        // A dead receiver is not an error: its monitor or the connection cleans up.
        let _ = env.borrow_mut().send_and_clear(pid, message);
    });
}

/// The engine's handler: asks the endpoint's dispatcher.
pub(crate) struct Dispatcher {
    pub(crate) pid: LocalPid,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dispatcher")
    }
}

impl Handler for Dispatcher {
    fn connect(&self, conn: &Arc<Conn>, request: ConnectRequest) {
        // The engine already picked the serializer from `vsn`: the socket is told, not
        // left to parse `vsn` again.
        let serializer = match conn.serializer() {
            Serializer::V1 => atoms::v1(),
            Serializer::V2 => atoms::v2(),
        };
        let conn = ResourceArc::new(ConnResource(Arc::clone(conn)));
        send(&self.pid, move |env| {
            let params = string_map(env, &request.params);
            let info = connect_info(env, &request);
            (atoms::fenix_connect(), conn, request.socket, params, info, serializer).encode(env)
        });
    }

    fn join(&self, conn: &Arc<Conn>, request: JoinRequest) {
        let conn = ResourceArc::new(ConnResource(Arc::clone(conn)));
        send(&self.pid, move |env| {
            let payload = payload_to_term(env, &request.payload);
            let socket = binary(env, &request.socket_data);
            (atoms::fenix_join(), conn, socket, request.topic.as_str(), RefTerm(request.join_ref.as_ref()), RefTerm(request.r#ref.as_ref()), payload)
                .encode(env)
        });
    }
}

fn string_map<'a>(env: Env<'a>, pairs: &[(String, String)]) -> Term<'a> {
    // Later duplicates win, as in Plug's query decoding.
    pairs.iter().fold(Term::map_new(env), |map, (k, v)| map.map_put(k.as_str(), v.as_str()).unwrap_or(map))
}

fn connect_info<'a>(env: Env<'a>, request: &ConnectRequest) -> Term<'a> {
    let ip = match request.peer.ip() {
        std::net::IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            (a, b, c, d).encode(env)
        }
        std::net::IpAddr::V6(ip) => {
            let segments: Vec<Term<'a>> = ip.segments().iter().map(|s| s.encode(env)).collect();
            rustler::types::tuple::make_tuple(env, &segments)
        }
    };
    let peer = Term::map_new(env)
        .map_put(atoms::address(), ip)
        .and_then(|m| m.map_put(atoms::port(), request.peer.port()));
    // Header names come lowercased from the request parser.
    let headers = |keep: &dyn Fn(&str) -> bool| -> Vec<(&str, &str)> {
        request.headers.iter().filter(|(k, _)| keep(k)).map(|(k, v)| (k.as_str(), v.as_str())).collect()
    };
    let x_headers = headers(&|k| k.starts_with("x-"));
    let trace_context_headers = headers(&|k| k == "traceparent" || k == "tracestate");
    let sec_websocket_headers = headers(&|k| k.starts_with("sec-websocket-"));
    let header = |name: &str| request.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let transport = match request.transport {
        TransportKind::WebSocket => atoms::websocket(),
        TransportKind::LongPoll => atoms::longpoll(),
    };
    let mut info = Term::map_new(env);
    for (key, value) in [
        (atoms::peer_data(), peer.unwrap_or_else(|_| atoms::nil().encode(env))),
        (atoms::uri(), request.uri.as_str().encode(env)),
        (atoms::x_headers(), x_headers.encode(env)),
        (atoms::trace_context_headers(), trace_context_headers.encode(env)),
        (atoms::sec_websocket_headers(), sec_websocket_headers.encode(env)),
        (atoms::user_agent(), header("user-agent").encode(env)),
        (atoms::auth_token(), request.auth_token.as_deref().encode(env)),
        (atoms::transport(), transport.encode(env)),
        // Not connect info keys: what the uri and the origin check are made of, and
        // the socket's `transport`.
        (atoms::host(), header("host").encode(env)),
        (atoms::secure(), request.secure.encode(env)),
        (atoms::origin(), header("origin").encode(env)),
    ] {
        info = info.map_put(key, value).unwrap_or(info);
    }
    info
}

/// A joined channel's process.
pub(crate) struct ChannelProcess {
    pub(crate) pid: LocalPid,
    /// Kept alive (and so monitored) for as long as the channel is joined.
    pub(crate) _resource: ResourceArc<ChannelResource>,
}

impl std::fmt::Debug for ChannelProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelProcess")
    }
}

impl ChannelSink for ChannelProcess {
    fn deliver(&self, event: ChannelEvent) {
        send(&self.pid, move |env| channel_message(env, &event));
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The message a channel process gets for `event`.
pub(crate) fn channel_message<'a>(env: Env<'a>, event: &ChannelEvent) -> Term<'a> {
    match event {
        ChannelEvent::In { message, size } => client_message(env, message, *size),
        ChannelEvent::Closed(reason) => {
            let reason = match reason {
                ClosedReason::DuplicateJoin => atoms::duplicate_join(),
                ClosedReason::ConnectionClosed => atoms::closed(),
            };
            (atoms::fenix_closed(), reason).encode(env)
        }
    }
}

/// `{:fenix_in, event, payload, ref, size}` or `{:fenix_leave, ref}`. The channel hands
/// `size` back (`channel_handled/2`) once it has handled the message: that is the
/// connection's inbound credit.
pub(crate) fn client_message<'a>(env: Env<'a>, message: &Message, size: usize) -> Term<'a> {
    let r#ref = RefTerm(message.r#ref.as_ref());
    match &message.event {
        Event::Leave => (atoms::fenix_leave(), r#ref).encode(env),
        event => (atoms::fenix_in(), event.as_str(), payload_to_term(env, &message.payload), r#ref, size).encode(env),
    }
}

/// A raw connection's transport process.
pub(crate) struct TransportProcess {
    pub(crate) pid: LocalPid,
    /// Kept alive (and so monitored) for as long as the connection is open.
    pub(crate) _resource: ResourceArc<TransportResource>,
}

impl std::fmt::Debug for TransportProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransportProcess")
    }
}

impl TransportSink for TransportProcess {
    fn deliver(&self, event: TransportEvent<'_>) {
        if rustler::thread::is_scheduler_thread() {
            // Not where the engine delivers from (its reader and sessions run on engine
            // threads); should it ever, the bytes are copied for the engine thread that sends.
            let (owned, bytes) = match event {
                TransportEvent::Message(kind, data) => (Owned::Message(kind), data.to_vec()),
                TransportEvent::Control(kind, data) => (Owned::Control(kind), data.to_vec()),
                TransportEvent::Closed(why) => (Owned::Closed(why), Vec::new()),
            };
            send(&self.pid, move |env| transport_message(env, &owned.lend(&bytes)));
            return;
        }
        // The bytes go straight from the read buffer into the message: one copy.
        ENV.with(|env| {
            let _ = env.borrow_mut().send_and_clear(&self.pid, |env| transport_message(env, &event));
        });
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A transport event without its bytes, for a send handed to an engine thread.
enum Owned {
    Message(DataKind),
    Control(ControlKind),
    Closed(TransportClosed),
}

impl Owned {
    fn lend(self, bytes: &[u8]) -> TransportEvent<'_> {
        match self {
            Owned::Message(kind) => TransportEvent::Message(kind, bytes),
            Owned::Control(kind) => TransportEvent::Control(kind, bytes),
            Owned::Closed(why) => TransportEvent::Closed(why),
        }
    }
}

/// The message a transport process gets for `event`: `{:fenix_frame, :text | :binary,
/// data}`, `{:fenix_control, :ping | :pong, payload | nil}` or `{:fenix_closed, reason}`
/// with reason `:closed`, `:timeout`, `:shutdown` or `{:error, close_code}`.
fn transport_message<'a>(env: Env<'a>, event: &TransportEvent<'_>) -> Term<'a> {
    match *event {
        TransportEvent::Message(kind, data) => {
            let kind = match kind {
                DataKind::Text => atoms::text(),
                DataKind::Binary => atoms::binary(),
            };
            (atoms::fenix_frame(), kind, binary(env, data)).encode(env)
        }
        TransportEvent::Control(kind, payload) => {
            let kind = match kind {
                ControlKind::Ping => atoms::ping(),
                ControlKind::Pong => atoms::pong(),
            };
            // As Phoenix says of handle_control/2: nil for a frame without payload.
            let payload = if payload.is_empty() { atoms::nil().encode(env) } else { binary(env, payload) };
            (atoms::fenix_control(), kind, payload).encode(env)
        }
        TransportEvent::Closed(why) => {
            let reason = match why {
                TransportClosed::Closed => atoms::closed().encode(env),
                TransportClosed::Timeout => atoms::timeout().encode(env),
                TransportClosed::Shutdown => atoms::shutdown().encode(env),
                TransportClosed::Error(code) => (atoms::error(), code.as_u16()).encode(env),
            };
            (atoms::fenix_closed(), reason).encode(env)
        }
    }
}
