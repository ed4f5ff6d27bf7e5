//! Answers to a connection's connect and join requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use fenix_core::server::{JoinError, JoinRef};
use rustler::{Binary, Encoder, Env, ResourceArc, Term};

use super::{error, ok_or_closed};
use crate::atoms;
use crate::beam::{client_message, ChannelProcess};
use crate::resources::{ChannelResource, ConnResource};
use crate::term::encode_payload;

/// Accepts a connection: `socket_id` (or nil) and the socket's encoded state.
#[rustler::nif]
fn conn_accept<'a>(env: Env<'a>, conn: ResourceArc<ConnResource>, socket_id: Option<String>, socket: Binary<'a>) -> Term<'a> {
    ok_or_closed(env, conn.0.accept(socket_id, Bytes::copy_from_slice(socket.as_slice())))
}

/// Refuses a connection (HTTP 403).
#[rustler::nif]
fn conn_refuse(env: Env<'_>, conn: ResourceArc<ConnResource>) -> Term<'_> {
    ok_or_closed(env, conn.0.refuse())
}

/// The calling process joined `topic`: sends the ok reply, subscribes, monitors the
/// caller. Returns `{:ok, channel}` or `{:error, :closed | :stale | :unsupported_term}`.
#[rustler::nif]
fn conn_joined<'a>(
    env: Env<'a>,
    conn: ResourceArc<ConnResource>,
    join: (String, Option<String>, Option<String>),
    response: Term<'a>,
    intercepts: Vec<String>,
) -> Term<'a> {
    let (topic, join_ref, r#ref) = join;
    let Ok(response) = encode_payload(response) else {
        return error(env, atoms::unsupported_term());
    };
    let pid = env.pid();
    let resource = ResourceArc::new(ChannelResource { conn: Arc::clone(&conn.0), topic: topic.clone(), join_ref: join_ref.clone() });
    let sink = Arc::new(ChannelProcess { pid, _resource: resource.clone() });
    let request = JoinRef { topic: &topic, join_ref: join_ref.as_deref(), r#ref: r#ref.as_deref() };
    let deliver = |message| {
        let _ = env.send(&pid, client_message(env, &message));
    };
    match conn.0.joined(&request, response.body(), sink, shared_intercepts(intercepts), deliver) {
        Ok(()) => {
            env.monitor(&resource, &pid);
            (atoms::ok(), resource).encode(env)
        }
        Err(e) => join_error(env, e),
    }
}

/// One shared copy of each intercept list: every channel of a module has the same
/// list, so a connection costs a reference count, not a copy. The lists come from
/// the channel modules (`intercept/1`), never from clients, so the cache is small.
type InterceptLists = Mutex<HashMap<Vec<String>, Arc<[String]>>>;

fn shared_intercepts(intercepts: Vec<String>) -> Arc<[String]> {
    static CACHE: OnceLock<InterceptLists> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    match cache.get(&intercepts) {
        Some(shared) => Arc::clone(shared),
        None => {
            let shared: Arc<[String]> = intercepts.clone().into();
            cache.insert(intercepts, Arc::clone(&shared));
            shared
        }
    }
}

/// A join was refused or crashed: sends the error reply.
#[rustler::nif]
fn conn_join_failed<'a>(
    env: Env<'a>,
    conn: ResourceArc<ConnResource>,
    join: (String, Option<String>, Option<String>),
    response: Term<'a>,
) -> Term<'a> {
    let (topic, join_ref, r#ref) = join;
    let Ok(response) = encode_payload(response) else {
        return error(env, atoms::unsupported_term());
    };
    let request = JoinRef { topic: &topic, join_ref: join_ref.as_deref(), r#ref: r#ref.as_deref() };
    match conn.0.join_failed(&request, response.body()) {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => join_error(env, e),
    }
}

/// No channel matches the topic: `unmatched topic`, as Phoenix answers it.
#[rustler::nif]
fn conn_join_unmatched(env: Env<'_>, conn: ResourceArc<ConnResource>, join: (String, Option<String>, Option<String>)) -> Term<'_> {
    let (topic, join_ref, r#ref) = join;
    let request = JoinRef { topic: &topic, join_ref: join_ref.as_deref(), r#ref: r#ref.as_deref() };
    match conn.0.join_unmatched(&request) {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => join_error(env, e),
    }
}

fn join_error(env: Env<'_>, e: JoinError) -> Term<'_> {
    match e {
        JoinError::Closed => error(env, atoms::closed()),
        JoinError::Stale => error(env, atoms::stale()),
    }
}
