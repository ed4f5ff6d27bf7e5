//! Answers to a connection's connect and join requests.

use std::sync::Arc;

use bytes::Bytes;
use fenix_core::server::{JoinRef, Pace};
use fenix_core::Sink;
use rustler::{Binary, Encoder, Env, ResourceArc, Term};

use super::error;
use crate::atoms;
use crate::client_ref::RefArg;
use crate::beam::{client_message, ChannelProcess, TransportProcess};
use crate::error::{JoinErrorTerm, NifError};
use crate::resources::{ChannelResource, ConnResource, TransportResource};
use crate::sender::{pace_atom, with_caller};
use crate::term::{encode_payload, EncodedPayload};

/// Accepts a connection: `socket_id` (or nil), the socket's encoded state, and for a
/// long-poll connection its session token (nil for a WebSocket).
#[rustler::nif]
fn conn_accept<'a>(
    env: Env<'a>,
    conn: ResourceArc<ConnResource>,
    socket_id: Option<String>,
    socket: Binary<'a>,
    session_token: Option<String>,
) -> Term<'a> {
    ok_or_error(env, conn.0.accept_session(socket_id, Bytes::copy_from_slice(socket.as_slice()), session_token))
}

/// Accepts a raw connection with the calling process as its transport (monitored: its
/// death closes the connection with 1011), told of pings and pongs with
/// `wants_control`. Returns `{:ok, transport}` or `{:error, :closed}`.
#[rustler::nif]
fn conn_accept_transport(env: Env<'_>, conn: ResourceArc<ConnResource>, wants_control: bool) -> Term<'_> {
    let pid = env.pid();
    let mut resource = None;
    let make_sink = |transport: &Arc<_>| -> fenix_core::TransportSinkRef {
        let transport_resource = ResourceArc::new(TransportResource(Arc::clone(transport)));
        resource = Some(transport_resource.clone());
        Arc::new(TransportProcess { pid, _resource: transport_resource })
    };
    match (conn.0.accept_transport(make_sink, wants_control), resource) {
        (Ok(_), Some(resource)) => {
            env.monitor(&resource, &pid);
            (atoms::ok(), resource).encode(env)
        }
        (Err(e), _) => NifError(e).encode(env),
        (Ok(_), None) => error(env, atoms::closed()),
    }
}

/// Refuses a connection (HTTP 403).
#[rustler::nif]
fn conn_refuse(env: Env<'_>, conn: ResourceArc<ConnResource>) -> Term<'_> {
    ok_or_error(env, conn.0.refuse())
}

fn ok_or_error(env: Env<'_>, result: fenix_core::Result<()>) -> Term<'_> {
    match result {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => NifError(e).encode(env),
    }
}

/// The calling process joined `topic`: sends the ok reply (a map), subscribes, monitors
/// the caller, hands it the messages held meanwhile. Returns
/// `{:ok | :wait, channel, conn_id}` or `{:error, :closed | :stale | :unsupported_term}`.
#[rustler::nif]
fn conn_joined<'a>(
    env: Env<'a>,
    conn: ResourceArc<ConnResource>,
    join: (String, RefArg, RefArg),
    response: Term<'a>,
    intercepts: Vec<String>,
) -> Term<'a> {
    let (topic, join_ref, r#ref) = join;
    let Ok(EncodedPayload::Json(response)) = encode_payload(response) else {
        return error(env, atoms::unsupported_term());
    };
    let pid = env.pid();
    let request = JoinRef { topic: &topic, join_ref: join_ref.as_ref(), r#ref: r#ref.as_ref() };
    let mut resource = None;
    let make_sink = |channel: &Arc<_>| -> Sink {
        let channel_resource = ResourceArc::new(ChannelResource(Arc::clone(channel)));
        resource = Some(channel_resource.clone());
        Arc::new(ChannelProcess { pid, _resource: channel_resource })
    };
    let deliver = |message, size| {
        let _ = env.send(&pid, client_message(env, &message, size));
    };
    let joined = with_caller(env, |sender| conn.0.joined(sender, &request, &response, make_sink, &intercepts, deliver));
    match (joined, resource) {
        (Ok((channel, pace)), Some(resource)) => {
            env.monitor(&resource, &pid);
            (pace_atom(pace), resource, channel.conn_id()).encode(env)
        }
        (Err(e), _) => JoinErrorTerm(e).encode(env),
        (Ok(_), None) => error(env, atoms::closed()),
    }
}

/// A join was refused or crashed: sends the error reply. `:ok`, `:wait` or
/// `{:error, :closed | :stale | :unsupported_term}`.
#[rustler::nif]
fn conn_join_failed<'a>(
    env: Env<'a>,
    conn: ResourceArc<ConnResource>,
    join: (String, RefArg, RefArg),
    response: Term<'a>,
) -> Term<'a> {
    let (topic, join_ref, r#ref) = join;
    let Ok(EncodedPayload::Json(response)) = encode_payload(response) else {
        return error(env, atoms::unsupported_term());
    };
    let request = JoinRef { topic: &topic, join_ref: join_ref.as_ref(), r#ref: r#ref.as_ref() };
    join_answered(env, with_caller(env, |sender| conn.0.join_failed(sender, &request, &response)))
}

/// No channel matches the topic: `unmatched topic`, as Phoenix answers it.
#[rustler::nif]
fn conn_join_unmatched(env: Env<'_>, conn: ResourceArc<ConnResource>, join: (String, RefArg, RefArg)) -> Term<'_> {
    let (topic, join_ref, r#ref) = join;
    let request = JoinRef { topic: &topic, join_ref: join_ref.as_ref(), r#ref: r#ref.as_ref() };
    join_answered(env, with_caller(env, |sender| conn.0.join_unmatched(sender, &request)))
}

fn join_answered(env: Env<'_>, result: Result<Pace, fenix_core::server::JoinError>) -> Term<'_> {
    match result {
        Ok(pace) => pace_atom(pace).encode(env),
        Err(e) => JoinErrorTerm(e).encode(env),
    }
}
