//! `Fenix.PubSub`: subscriptions, and broadcasts of any term (Phoenix.PubSub's default
//! dispatch). The state and the delivery are `crate::pubsub`'s.

use bytes::Bytes;
use rustler::{Atom, Encoder, Env, LocalPid, ResourceArc, Term};

use super::broadcast::DIRTY_THRESHOLD;
use crate::atoms;
use crate::pubsub::{send_to, PubSubResource};
use crate::sender;
use crate::term::is_large;

/// A new PubSub server's state.
#[rustler::nif]
fn pubsub_new(env: Env<'_>) -> Term<'_> {
    ResourceArc::new(PubSubResource::new()).encode(env)
}

/// The calling process subscribes to `topic`, with `metadata` (nil for none).
#[rustler::nif]
fn pubsub_subscribe<'a>(env: Env<'a>, pubsub: ResourceArc<PubSubResource>, topic: &str, metadata: Term<'a>) -> Atom {
    let metadata = (metadata != atoms::nil().encode(env)).then(|| Bytes::copy_from_slice(metadata.to_binary().as_slice()));
    pubsub.subscribe(env, topic, metadata);
    atoms::ok()
}

/// The calling process unsubscribes from `topic` (every subscription it has to it).
#[rustler::nif]
fn pubsub_unsubscribe(env: Env<'_>, pubsub: ResourceArc<PubSubResource>, topic: &str) -> Atom {
    pubsub.unsubscribe(env, topic);
    atoms::ok()
}

/// Sends `message` to every subscriber of `topic` and every channel process joined to
/// it, but `from` (nil for none): `:ok`, or `:dirty` when it is more than a NIF may do
/// (many receivers, or a large message to copy to each).
#[rustler::nif]
fn pubsub_dispatch<'a>(env: Env<'a>, pubsub: ResourceArc<PubSubResource>, topic: &str, message: Term<'a>, from: Option<LocalPid>) -> Atom {
    if is_large(message) || pubsub.reach(topic, true) > DIRTY_THRESHOLD {
        return atoms::dirty();
    }
    dispatch(env, &pubsub, topic, message, from)
}

/// [`pubsub_dispatch`] on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn pubsub_dispatch_dirty<'a>(env: Env<'a>, pubsub: ResourceArc<PubSubResource>, topic: &str, message: Term<'a>, from: Option<LocalPid>) -> Atom {
    dispatch(env, &pubsub, topic, message, from)
}

fn dispatch(env: Env<'_>, pubsub: &PubSubResource, topic: &str, message: Term<'_>, from: Option<LocalPid>) -> Atom {
    let from_id = from.map(|pid| sender::id(env, pid));
    send_to(env, &pubsub.subscriptions(topic, from_id), message);
    for pid in pubsub.channels(topic).into_iter().filter(|pid| Some(*pid) != from) {
        let _ = env.send(&pid, message);
    }
    atoms::ok()
}

/// `[{pid, metadata}]` of `topic`, for a custom dispatcher: the subscriptions in the
/// order they were made, then the topic's channel processes (metadata nil).
#[rustler::nif(schedule = "DirtyCpu")]
fn pubsub_entries<'a>(env: Env<'a>, pubsub: ResourceArc<PubSubResource>, topic: &str) -> Term<'a> {
    let nil = atoms::nil().encode(env);
    let metadata = |bytes: &Option<Bytes>| bytes.as_ref().and_then(|b| env.binary_to_term(b)).map_or(nil, |(term, _)| term);
    let subscriptions = pubsub.subscriptions(topic, None).into_iter().map(|s| (s.process, metadata(&s.metadata)).encode(env));
    let channels = pubsub.channels(topic).into_iter().map(|pid| (pid, nil).encode(env));
    subscriptions.chain(channels).collect::<Vec<Term<'a>>>().encode(env)
}
