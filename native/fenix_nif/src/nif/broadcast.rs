//! Endpoint broadcasts (`MyEndpoint.broadcast/3` and its variants). The fan-out to the
//! endpoint's sockets runs on the engine (see `fenix_core`'s outbound lanes), so a
//! broadcast call only encodes the payload once and queues it. Channels that intercept
//! the event get the original term here, in the caller, and so do the processes
//! subscribed to the topic on the endpoint's PubSub server, as
//! `%Fenix.Socket.Broadcast{}` (see `crate::pubsub`). When more than
//! `DIRTY_THRESHOLD` processes would get it, or when the payload is too large to
//! encode within a NIF's time, the regular NIF answers `:dirty` and the caller repeats
//! the call on the dirty-scheduler variant.

use fenix_core::fanout::Broadcast;
use fenix_core::server::Broadcasted;
use fenix_core::Sink;
use rustler::{Encoder, Env, LocalPid, ResourceArc, Term};

use super::error;
use crate::atoms;
use crate::beam::ChannelProcess;
use crate::error::NifError;
use fenix_core::pubsub::Subscription;

use crate::pubsub::{broadcast_struct, send_to};
use crate::resources::EndpointResource;
use crate::sender::{self, pace_atom, with_caller};
use crate::term::{encode_payload, is_large};

/// About 0.2 ms of sends to processes.
pub(super) const DIRTY_THRESHOLD: usize = 500;

/// Broadcasts `event` to `topic`, except to connection `exclude` and process `from`
/// (either may be nil). Returns `:ok`, `:wait`, `:dirty`, `{:error, :unsupported_term}`,
/// or `{:error, {:encode, text}}` for a binary payload whose topic or event is too long
/// for a binary frame (then nobody gets it).
#[rustler::nif]
fn endpoint_broadcast<'a>(
    env: Env<'a>,
    endpoint: ResourceArc<EndpointResource>,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
    from: Option<LocalPid>,
) -> Term<'a> {
    let subscribers = subscribers(env, &endpoint, topic, from);
    if is_large(payload) || subscribers.len() > DIRTY_THRESHOLD {
        return atoms::dirty().encode(env);
    }
    broadcast(env, &endpoint, topic, event, payload, exclude, &subscribers, DIRTY_THRESHOLD)
}

/// [`endpoint_broadcast`] on a dirty CPU scheduler, for events many processes get.
#[rustler::nif(schedule = "DirtyCpu")]
fn endpoint_broadcast_dirty<'a>(
    env: Env<'a>,
    endpoint: ResourceArc<EndpointResource>,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
    from: Option<LocalPid>,
) -> Term<'a> {
    let subscribers = subscribers(env, &endpoint, topic, from);
    broadcast(env, &endpoint, topic, event, payload, exclude, &subscribers, usize::MAX)
}

/// The subscribers of `topic` on the endpoint's PubSub server but `from`: one lookup,
/// and no allocation for a topic without any.
fn subscribers(env: Env<'_>, endpoint: &EndpointResource, topic: &str, from: Option<LocalPid>) -> Vec<Subscription<LocalPid>> {
    let from = from.map(|pid| sender::id(env, pid));
    endpoint.pubsub.as_ref().map_or_else(Vec::new, |pubsub| pubsub.subscriptions(topic, from))
}

#[allow(clippy::too_many_arguments)]
fn broadcast<'a>(
    env: Env<'a>,
    endpoint: &EndpointResource,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
    subscribers: &[Subscription<LocalPid>],
    max_interceptors: usize,
) -> Term<'a> {
    let Ok(encoded) = encode_payload(payload) else {
        return error(env, atoms::unsupported_term());
    };
    let message = Broadcast { event, body: encoded.body(), exclude };
    // Intercepting channels get the original term: no JSON round trip for handle_out.
    let mut out = None;
    let intercept = |sink: &Sink| {
        if let Some(process) = sink.as_any().downcast_ref::<ChannelProcess>() {
            let out = *out.get_or_insert_with(|| (atoms::fenix_out(), event, payload).encode(env));
            let _ = env.send(&process.pid, out);
        }
    };
    let broadcasted =
        with_caller(env, |sender| endpoint.server.broadcast(sender, &message, topic, max_interceptors, intercept));
    let pace = match broadcasted {
        Ok(Broadcasted::Queued(pace)) => pace,
        Ok(Broadcasted::TooManyInterceptors(_)) => return atoms::dirty().encode(env),
        Err(error) => return NifError(error.into()).encode(env),
    };
    if !subscribers.is_empty() {
        send_to(env, subscribers, broadcast_struct(env, topic, event, payload));
    }
    pace_atom(pace).encode(env)
}
