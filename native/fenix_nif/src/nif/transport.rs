//! What a raw connection's transport process sends to its client, and the credit it
//! gives back.

use fenix_core::websocket::CloseCode;
use fenix_core::DataKind;
use rustler::{Atom, Binary, Encoder, Env, NifResult, ResourceArc, Term};

use super::paced;
use crate::atoms;
use crate::resources::TransportResource;
use crate::sender::{pace_atom, with_caller};

/// Larger messages are framed (one copy, ~0.1 ms a MiB) on a dirty scheduler, so that
/// a push stays well within the ~1 ms a NIF on a normal scheduler may take.
const DIRTY_BYTES: usize = 1 << 20;

/// Sends `data` as one message, `kind` `:text` or `:binary`; `:dirty` when it is too
/// large to frame here (the caller repeats on `transport_push_dirty`).
#[rustler::nif]
fn transport_push<'a>(env: Env<'a>, transport: ResourceArc<TransportResource>, kind: Atom, data: Binary<'a>) -> NifResult<Term<'a>> {
    if data.len() > DIRTY_BYTES {
        return Ok(atoms::dirty().encode(env));
    }
    push(env, &transport, kind, &data)
}

/// [`transport_push`] on a dirty CPU scheduler, for large messages.
#[rustler::nif(schedule = "DirtyCpu")]
fn transport_push_dirty<'a>(
    env: Env<'a>,
    transport: ResourceArc<TransportResource>,
    kind: Atom,
    data: Binary<'a>,
) -> NifResult<Term<'a>> {
    push(env, &transport, kind, &data)
}

/// `kind` other than `:text` or `:binary` raises `ArgumentError`.
fn push<'a>(env: Env<'a>, transport: &TransportResource, kind: Atom, data: &[u8]) -> NifResult<Term<'a>> {
    let kind = if kind == atoms::text() {
        DataKind::Text
    } else if kind == atoms::binary() {
        DataKind::Binary
    } else {
        return Err(rustler::Error::BadArg);
    };
    Ok(paced(env, with_caller(env, |sender| transport.0.push(sender, kind, data))))
}

/// Closes the connection, after what the caller sent: with 1000 when `graceful` (a
/// stop), 1011 otherwise (a failure). `:ok` or `:wait`.
#[rustler::nif]
fn transport_close(env: Env<'_>, transport: ResourceArc<TransportResource>, graceful: bool) -> Atom {
    let code = if graceful { CloseCode::Normal } else { CloseCode::Internal };
    pace_atom(with_caller(env, |sender| transport.0.close(sender, code)))
}

/// The transport has handled a message of `size` bytes: the connection's inbound credit
/// is given back.
#[rustler::nif]
fn transport_handled(transport: ResourceArc<TransportResource>, size: usize) -> Atom {
    transport.0.handled(size);
    atoms::ok()
}
