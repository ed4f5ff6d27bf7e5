//! Broadcasts. The fan-out itself runs on the engine (see `fenix_core`'s outbound
//! queue), so a broadcast call only encodes the payload once and queues it. Channels
//! that intercept the event get the original term here, in the caller: when more
//! than `DIRTY_THRESHOLD` subscribers intercept it, the regular NIF answers `:dirty`
//! and the caller repeats the call on the dirty-scheduler variant.

use fenix_core::{ChannelSink, Error};
use rustler::{Encoder, Env, ResourceArc, Term};

use super::error;
use crate::atoms;
use crate::beam::ChannelProcess;
use crate::resources::EndpointResource;
use crate::term::encode_payload;

/// About 0.2 ms of sends to intercepting channel processes.
const DIRTY_THRESHOLD: usize = 500;

/// Broadcasts `event` to `topic`, except to connection `exclude` (or nil).
/// Returns `:ok`, `:dirty`, or `{:error, :unsupported_term | :overloaded}`.
#[rustler::nif]
fn pubsub_broadcast<'a>(
    env: Env<'a>,
    endpoint: ResourceArc<EndpointResource>,
    topic: &str,
    event: &str,
    payload: Term<'a>,
    exclude: Option<u64>,
) -> Term<'a> {
    if endpoint.server.registry().interceptor_count(topic, event) > DIRTY_THRESHOLD {
        return atoms::dirty().encode(env);
    }
    broadcast(env, &endpoint, topic, event, payload, exclude)
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
    endpoint.server.registry().intercepting(topic, event, exclude, |sink: &std::sync::Arc<dyn ChannelSink>| {
        if let Some(process) = sink.as_any().downcast_ref::<ChannelProcess>() {
            let message = *message.get_or_insert_with(|| (atoms::fenix_out(), event, payload).encode(env));
            let _ = env.send(&process.pid, message);
        }
    });
    match endpoint.server.broadcast(topic, event, encoded.body(), exclude) {
        Ok(()) => atoms::ok().encode(env),
        Err(Error::Capacity(_)) => error(env, atoms::overloaded()),
        Err(_) => error(env, atoms::closed()),
    }
}
