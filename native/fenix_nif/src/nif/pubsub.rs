//! Broadcasts. A fan-out to many subscribers takes longer than a NIF may: above
//! `DIRTY_THRESHOLD` subscribers the regular NIF answers `:dirty` and the caller
//! repeats the call on the dirty-scheduler variant. Both run in the caller, so a
//! process's broadcasts keep their order.

use fenix_core::ChannelSink;
use rustler::{Encoder, Env, ResourceArc, Term};

use super::channel::delivery_term;
use super::error;
use crate::atoms;
use crate::beam::ChannelProcess;
use crate::resources::EndpointResource;
use crate::term::encode_payload;

/// About 0.2 ms of queue pushes.
const DIRTY_THRESHOLD: usize = 2_000;

/// Broadcasts `event` to `topic`, except to connection `exclude` (or nil).
/// Returns `{:ok, delivered}`, `:dirty`, or `{:error, :unsupported_term}`.
#[rustler::nif]
fn pubsub_broadcast<'a>(
    env: Env<'a>,
    endpoint: ResourceArc<EndpointResource>,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
) -> Term<'a> {
    if endpoint.server.registry().subscriber_count(topic) > DIRTY_THRESHOLD {
        return atoms::dirty().encode(env);
    }
    broadcast(env, &endpoint, topic, event, payload, exclude)
}

/// [`pubsub_broadcast`] on a dirty CPU scheduler, for large fan-outs.
#[rustler::nif(schedule = "DirtyCpu")]
fn pubsub_broadcast_dirty<'a>(
    env: Env<'a>,
    endpoint: ResourceArc<EndpointResource>,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
) -> Term<'a> {
    broadcast(env, &endpoint, topic, event, payload, exclude)
}

fn broadcast<'a>(
    env: Env<'a>,
    endpoint: &EndpointResource,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
) -> Term<'a> {
    let Ok(encoded) = encode_payload(payload) else {
        return error(env, atoms::unsupported_term());
    };
    // Intercepting channels get the original term: no JSON round trip for handle_out.
    let mut message = None;
    let intercept = |sink: &std::sync::Arc<dyn ChannelSink>| {
        if let Some(process) = sink.as_any().downcast_ref::<ChannelProcess>() {
            let message = *message.get_or_insert_with(|| (atoms::fenix_out(), event, payload).encode(env));
            let _ = env.send(&process.pid, message);
        }
    };
    let delivery = endpoint.server.registry().broadcast(topic, event, encoded.body(), exclude, intercept);
    delivery_term(env, delivery)
}
