//! Presence (`Fenix.Presence`): each presence module has a hub in the engine
//! (`fenix_core::server::PresenceHub`) that holds its topics' state and broadcasts their
//! coalesced diffs. A process that tracks is monitored: when it exits, for any reason,
//! everything it tracked leaves.
//!
//! A meta is kept twice: as JSON for the clients, and as the term it was tracked with
//! (its external format), from which `list` and `get_by_key` give it back as it was
//! ([`crate::etf`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fenix_core::presence::{Diff, Limits, MetaFields, PresenceError};
use fenix_core::protocol::Body;
use fenix_core::server::{BroadcastHandler, DiffHandler, DiffRoute, Listed, PresenceHub, DEFAULT_TICK, PRESENCE_DIFF};
use fenix_core::Sink;
use rustler::{Encoder, Env, LocalPid, Resource, ResourceArc, Term};
use serde_json::Value;

use super::{error, paced};
use crate::atoms;
use crate::beam::{self, ChannelProcess};
use crate::etf::Etf;
use crate::monitors::Monitors;
use crate::pubsub::PubSubResource;
use crate::resources::{ChannelResource, EndpointResource};
use crate::sender::{self, with_caller};
use crate::term::{encode_payload, EncodedPayload};

/// A presence module's hub, and the processes it monitors.
#[derive(Debug)]
pub(crate) struct PresenceResource {
    hub: Arc<PresenceHub>,
    /// The processes that track: when one exits, its entries leave.
    tracked: Arc<Monitors>,
}

#[rustler::resource_impl]
impl Resource for PresenceResource {}

/// Starts a hub on `endpoint` whose diffs go out every `tick_ms`: `{:ok, presence}`.
/// A nil option takes the engine's default. With `diffs_to` (a pid), each diff is also
/// sent there as `{:fenix_presence_diff, topic, %{joins: presences, leaves: presences}}`; with
/// `broadcast` false, only there (the process broadcasts it itself, after `fetch/2`).
#[rustler::nif]
#[allow(clippy::too_many_arguments)]
fn presence_start(
    env: Env<'_>,
    endpoint: ResourceArc<EndpointResource>,
    tick_ms: Option<u64>,
    max_meta_bytes: Option<usize>,
    max_entries: Option<usize>,
    diffs_to: Option<LocalPid>,
    broadcast: bool,
) -> Term<'_> {
    let defaults = Limits::default();
    let limits = Limits {
        max_meta_bytes: max_meta_bytes.unwrap_or(defaults.max_meta_bytes),
        max_entries: max_entries.unwrap_or(defaults.max_entries),
        ..defaults
    };
    let tick = tick_ms.map_or(DEFAULT_TICK, |ms| Duration::from_millis(ms.max(1)));
    // The hub's tick task is spawned on the engine's runtime, not on this BEAM thread.
    let _runtime = crate::runtime::current().enter();
    let handler = diffs_to.map(|pid| -> DiffHandler {
        Box::new(move |topic: &str, diff: &Diff| {
            let topic = topic.to_owned();
            let mut etf = Etf::new();
            etf.diff(diff);
            beam::send(&pid, move |env| (atoms::fenix_presence_diff(), topic.as_str(), etf.decode(env)).encode(env));
        })
    });
    let pubsub = endpoint.pubsub.clone();
    let on_broadcast: BroadcastHandler = Box::new(move |topic, diff, interceptors| hand_out(topic, diff, interceptors, pubsub.as_deref()));
    let route = DiffRoute { broadcast, handler, on_broadcast: Some(on_broadcast) };
    let hub = endpoint.server.start_presence(tick, limits, route);
    let tracked = Monitors::new({
        let hub = Arc::clone(&hub);
        move |pid| hub.leave(pid)
    });
    (atoms::ok(), ResourceArc::new(PresenceResource { hub, tracked })).encode(env)
}

/// A broadcast diff, to the channels that intercept it: `{:fenix_out, "presence_diff",
/// %{joins: presences, leaves: presences}}`, as a broadcast from the BEAM gives them;
/// and to the topic's subscribers on the endpoint's PubSub server, as
/// `%Fenix.Socket.Broadcast{event: "presence_diff"}`.
fn hand_out(topic: &str, diff: &Diff, interceptors: &[Sink], pubsub: Option<&PubSubResource>) {
    if !interceptors.is_empty() {
        let diff = {
            let mut etf = Etf::new();
            etf.diff(diff);
            Arc::new(etf)
        };
        for sink in interceptors {
            if let Some(process) = sink.as_any().downcast_ref::<ChannelProcess>() {
                let diff = Arc::clone(&diff);
                beam::send(&process.pid, move |env| (atoms::fenix_out(), PRESENCE_DIFF, diff.decode(env)).encode(env));
            }
        }
    }
    if let Some(pubsub) = pubsub.filter(|pubsub| pubsub.reach(topic, false) > 0) {
        let mut etf = Etf::new();
        etf.broadcast(topic, PRESENCE_DIFF).diff(diff);
        pubsub.send_written(topic, &Arc::new(etf));
    }
}

/// `pid` tracks `key` with `meta` on `topic`: `{:ok, phx_ref}` or `{:error, reason}`.
#[rustler::nif]
fn presence_track<'a>(env: Env<'a>, presence: ResourceArc<PresenceResource>, pid: LocalPid, topic: &str, key: &str, meta: Term<'a>) -> Term<'a> {
    let Some(meta) = meta_map(meta) else { return error(env, atoms::unsupported_term()) };
    let id = sender::id(env, pid);
    match presence.hub.track(id, topic, key, meta) {
        Ok(r#ref) => {
            presence.tracked.watch(env, pid);
            (atoms::ok(), r#ref.as_str()).encode(env)
        }
        Err(PresenceError::AlreadyTracked { .. }) => (atoms::error(), (atoms::already_tracked(), pid, topic, key)).encode(env),
        Err(e) => presence_error(env, e),
    }
}

/// `pid` no longer tracks `key` on `topic`.
#[rustler::nif]
fn presence_untrack(env: Env<'_>, presence: ResourceArc<PresenceResource>, pid: LocalPid, topic: &str, key: &str) -> rustler::Atom {
    presence.hub.untrack(sender::id(env, pid), topic, key);
    atoms::ok()
}

/// `pid` tracks `key` on `topic` with `meta` from now on: `{:ok, phx_ref}` or
/// `{:error, :nopresence | reason}`.
#[rustler::nif]
fn presence_update<'a>(env: Env<'a>, presence: ResourceArc<PresenceResource>, pid: LocalPid, topic: &str, key: &str, meta: Term<'a>) -> Term<'a> {
    let Some(meta) = meta_map(meta) else { return error(env, atoms::unsupported_term()) };
    match presence.hub.update(sender::id(env, pid), topic, key, meta) {
        Ok(r#ref) => (atoms::ok(), r#ref.as_str()).encode(env),
        Err(e) => presence_error(env, e),
    }
}

/// The meta `pid` tracks `key` with on `topic` (as tracked: without `phx_ref`), or
/// nil: what an update given a function starts from.
#[rustler::nif]
fn presence_meta<'a>(env: Env<'a>, presence: ResourceArc<PresenceResource>, pid: LocalPid, topic: &str, key: &str) -> Term<'a> {
    presence
        .hub
        .meta_of(sender::id(env, pid), topic, key)
        .and_then(|meta| env.binary_to_term(meta.native()).map(|(term, _)| term))
        .unwrap_or_else(|| atoms::nil().encode(env))
}

/// `{%{key => %{metas: [meta, ...]}}, listed}` of `topic`: the presences, and what was
/// listed, for [`presence_push_listed`] (an integer, or nil for an empty topic). On a
/// dirty scheduler: a topic of 10,000 members is about 10 ms, most of it the VM
/// decoding the terms.
#[rustler::nif(schedule = "DirtyCpu")]
fn presence_list<'a>(env: Env<'a>, presence: ResourceArc<PresenceResource>, topic: &str) -> Term<'a> {
    let mut etf = Etf::new();
    let mut presences = etf.presences();
    // Written under the topic's lock: a copy of bytes per meta, nothing gathered first.
    let Listed(listed) = presence.hub.list(topic, |key, meta| presences.add(key, meta));
    presences.finish();
    (etf.decode(env), listed).encode(env)
}

/// `%{metas: [meta, ...]}` of `key` on `topic`, or `[]` when nobody tracks it. Dirty, as
/// `presence_list`: one key may have many metas.
#[rustler::nif(schedule = "DirtyCpu")]
fn presence_get_by_key<'a>(env: Env<'a>, presence: ResourceArc<PresenceResource>, topic: &str, key: &str) -> Term<'a> {
    let metas = presence.hub.get_by_key(topic, key);
    if metas.is_empty() {
        return Vec::<Term<'a>>::new().encode(env);
    }
    let mut etf = Etf::new();
    etf.metas(metas.iter());
    etf.decode(env)
}

/// Pushes `event` with the `presence_state` of `topic` as [`presence_list`] gave it
/// (`listed`), encoded by the engine: `:ok` (or `:wait`, as any push), or `:changed`
/// when the topic changed since (the caller then pushes the list it has). Dirty: a
/// 10,000-member state is about a megabyte.
#[rustler::nif(schedule = "DirtyCpu")]
fn presence_push_listed<'a>(
    env: Env<'a>,
    presence: ResourceArc<PresenceResource>,
    channel: ResourceArc<ChannelResource>,
    topic: &str,
    listed: Option<u64>,
    event: &str,
) -> Term<'a> {
    match presence.hub.state_as_listed(topic, Listed(listed)) {
        Some(state) => push_state(env, &channel, event, &state),
        None => atoms::changed().encode(env),
    }
}

/// Pushes `event` with the `presence_state` of `topic` now, encoded by the engine, no
/// term made: `:ok` (or `:wait`, as any push). Dirty, as [`presence_push_listed`].
#[rustler::nif(schedule = "DirtyCpu")]
fn presence_push_state<'a>(
    env: Env<'a>,
    presence: ResourceArc<PresenceResource>,
    channel: ResourceArc<ChannelResource>,
    topic: &str,
    event: &str,
) -> Term<'a> {
    push_state(env, &channel, event, &presence.hub.state(topic))
}

fn push_state<'a>(env: Env<'a>, channel: &ChannelResource, event: &str, state: &[u8]) -> Term<'a> {
    paced(env, with_caller(env, |sender| channel.0.push(sender, event, Body::Json(state))))
}

/// A meta term as a JSON object and its external format, or `None` when it is not a
/// map JSON can carry.
fn meta_map(term: Term<'_>) -> Option<MetaFields> {
    let json = match encode_payload(term) {
        Ok(EncodedPayload::Json(json)) => match serde_json::from_slice(&json) {
            Ok(Value::Object(map)) => map,
            _ => return None,
        },
        _ => return None,
    };
    Some(MetaFields { json, native: Bytes::copy_from_slice(term.to_binary().as_slice()) })
}

fn presence_error(env: Env<'_>, e: PresenceError) -> Term<'_> {
    let reason = match &e {
        PresenceError::NotTracked { .. } => return error(env, atoms::nopresence()),
        PresenceError::AlreadyTracked { .. } => atoms::already_tracked(),
        PresenceError::MetaTooLarge { .. } => atoms::meta_too_large(),
        PresenceError::KeyTooLong { .. } => atoms::key_too_long(),
        PresenceError::TooManyEntries { .. } => atoms::presence_full(),
        PresenceError::InvalidMeta(_) => atoms::invalid_meta(),
    };
    (atoms::error(), (reason, e.to_string())).encode(env)
}
