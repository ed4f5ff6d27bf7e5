//! Broadcasts. The fan-out itself runs on the engine (see `fenix_core`'s outbound
//! lanes), so a broadcast call only encodes the payload once and queues it. Channels
//! that intercept the event get the original term here, in the caller: when more
//! than `DIRTY_THRESHOLD` subscribers intercept it, or when the payload is too large to
//! encode within a NIF's time, the regular NIF answers `:dirty` and the caller repeats
//! the call on the dirty-scheduler variant.

use fenix_core::fanout::Broadcast;
use fenix_core::server::Broadcasted;
use fenix_core::Sink;
use rustler::{Encoder, Env, ResourceArc, Term};

use super::error;
use crate::atoms;
use crate::beam::ChannelProcess;
use crate::resources::EndpointResource;
use crate::sender::{pace_atom, with_caller};
use crate::term::{encode_payload, is_large};

/// About 0.2 ms of sends to intercepting channel processes.
const DIRTY_THRESHOLD: usize = 500;

/// Broadcasts `event` to `topic`, except to connection `exclude` (or nil).
/// Returns `:ok`, `:wait`, `:dirty`, or `{:error, :unsupported_term}`.
#[rustler::nif]
fn pubsub_broadcast<'a>(
    env: Env<'a>,
    endpoint: ResourceArc<EndpointResource>,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
) -> Term<'a> {
    if is_large(payload) {
        return atoms::dirty().encode(env);
    }
    broadcast(env, &endpoint, topic, event, payload, exclude, DIRTY_THRESHOLD)
}

/// [`pubsub_broadcast`] on a dirty CPU scheduler, for events many channels intercept.
#[rustler::nif(schedule = "DirtyCpu")]
fn pubsub_broadcast_dirty<'a>(
    env: Env<'a>,
    endpoint: ResourceArc<EndpointResource>,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
) -> Term<'a> {
    broadcast(env, &endpoint, topic, event, payload, exclude, usize::MAX)
}

fn broadcast<'a>(
    env: Env<'a>,
    endpoint: &EndpointResource,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
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
    match broadcasted {
        Broadcasted::Queued(pace) => pace_atom(pace).encode(env),
        Broadcasted::TooManyInterceptors(_) => atoms::dirty().encode(env),
    }
}
