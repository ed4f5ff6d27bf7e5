//! What a joined channel's process sends to its client, and the credit it gives back.

use fenix_core::protocol::Status;
use rustler::{Atom, Encoder, Env, ResourceArc, Term};

use super::{error, paced};
use crate::atoms;
use crate::client_ref::RefArg;
use crate::resources::ChannelResource;
use crate::sender::with_caller;
use crate::term::{encode_payload, is_large};

/// Replies to the client message `ref` with `{status, payload}`; `:dirty` when the
/// payload is too large to encode here (the caller repeats on `channel_reply_dirty`).
#[rustler::nif]
fn channel_reply<'a>(env: Env<'a>, channel: ResourceArc<ChannelResource>, r#ref: RefArg, status: Atom, payload: Term<'a>) -> Term<'a> {
    if is_large(payload) {
        return atoms::dirty().encode(env);
    }
    reply(env, &channel, r#ref, status, payload)
}

/// [`channel_reply`] on a dirty CPU scheduler, for large payloads.
#[rustler::nif(schedule = "DirtyCpu")]
fn channel_reply_dirty<'a>(env: Env<'a>, channel: ResourceArc<ChannelResource>, r#ref: RefArg, status: Atom, payload: Term<'a>) -> Term<'a> {
    reply(env, &channel, r#ref, status, payload)
}

fn reply<'a>(env: Env<'a>, channel: &ChannelResource, r#ref: RefArg, status: Atom, payload: Term<'a>) -> Term<'a> {
    let Ok(status_name) = status.to_term(env).atom_to_string() else {
        return error(env, atoms::unsupported_term());
    };
    let Ok(payload) = encode_payload(payload) else {
        return error(env, atoms::unsupported_term());
    };
    let status = Status::from_name(&status_name);
    paced(env, with_caller(env, |sender| channel.0.reply(sender, r#ref.as_ref(), status, payload.body())))
}

/// Pushes `event` to this channel's client; `:dirty` when the payload is too large to
/// encode here (the caller repeats on `channel_push_dirty`).
#[rustler::nif]
fn channel_push<'a>(env: Env<'a>, channel: ResourceArc<ChannelResource>, event: &str, payload: Term<'a>) -> Term<'a> {
    if is_large(payload) {
        return atoms::dirty().encode(env);
    }
    push(env, &channel, event, payload)
}

/// [`channel_push`] on a dirty CPU scheduler, for large payloads (a big topic's
/// `presence_state`).
#[rustler::nif(schedule = "DirtyCpu")]
fn channel_push_dirty<'a>(env: Env<'a>, channel: ResourceArc<ChannelResource>, event: &str, payload: Term<'a>) -> Term<'a> {
    push(env, &channel, event, payload)
}

fn push<'a>(env: Env<'a>, channel: &ChannelResource, event: &str, payload: Term<'a>) -> Term<'a> {
    let Ok(payload) = encode_payload(payload) else {
        return error(env, atoms::unsupported_term());
    };
    paced(env, with_caller(env, |sender| channel.0.push(sender, event, payload.body())))
}

/// The channel stops on its own: `phx_close` to the client, unsubscribed.
#[rustler::nif]
fn channel_close(env: Env<'_>, channel: ResourceArc<ChannelResource>) -> Term<'_> {
    if with_caller(env, |sender| channel.0.close(sender)) {
        atoms::ok().encode(env)
    } else {
        error(env, atoms::closed())
    }
}

/// The channel has handled a client message of `size` bytes: the connection's inbound
/// credit is given back.
#[rustler::nif]
fn channel_handled(channel: ResourceArc<ChannelResource>, size: usize) -> Atom {
    channel.0.handled(size);
    atoms::ok()
}
