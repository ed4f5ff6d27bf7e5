//! What a joined channel's process sends to its client.

use fenix_core::protocol::Status;
use rustler::{Atom, Encoder, Env, ResourceArc, Term};

use super::{error, ok_or_closed};
use crate::atoms;
use crate::resources::ChannelResource;
use crate::term::encode_payload;

/// Replies to the client message `ref` with `{status, payload}`.
#[rustler::nif]
fn channel_reply<'a>(env: Env<'a>, channel: ResourceArc<ChannelResource>, r#ref: Option<String>, status: Atom, payload: Term<'a>) -> Term<'a> {
    let Ok(status_name) = status.to_term(env).atom_to_string() else {
        return error(env, atoms::unsupported_term());
    };
    let status = Status::from_name(&status_name);
    let Ok(payload) = encode_payload(payload) else {
        return error(env, atoms::unsupported_term());
    };
    let result = channel.conn.reply(channel.join_ref.as_deref(), r#ref.as_deref(), &channel.topic, status, payload.body());
    ok_or_closed(env, result)
}

/// Pushes `event` to this channel's client.
#[rustler::nif]
fn channel_push<'a>(env: Env<'a>, channel: ResourceArc<ChannelResource>, event: &str, payload: Term<'a>) -> Term<'a> {
    let Ok(payload) = encode_payload(payload) else {
        return error(env, atoms::unsupported_term());
    };
    ok_or_closed(env, channel.conn.push(channel.join_ref.as_deref(), &channel.topic, event, payload.body()))
}

/// The channel stops on its own: `phx_close` to the client, unsubscribed.
#[rustler::nif]
fn channel_close(env: Env<'_>, channel: ResourceArc<ChannelResource>) -> Term<'_> {
    if channel.conn.channel_closed(&channel.topic, channel.join_ref.as_deref()) {
        atoms::ok().encode(env)
    } else {
        error(env, atoms::closed())
    }
}

/// The connection id, to exclude it from a broadcast (`broadcast_from`).
#[rustler::nif]
fn channel_conn_id(channel: ResourceArc<ChannelResource>) -> u64 {
    channel.conn.id()
}
