//! The NIF functions, by area. Each decodes its arguments, makes one call into
//! `fenix_core`, and encodes the result as `:ok`, `{:ok, value}` or `{:error, reason}`.

mod channel;
mod conn;
mod endpoint;
mod pubsub;

use rustler::{Atom, Encoder, Env, Term};

use crate::atoms;

/// `:ok`, `{:error, :overloaded}` or `{:error, :closed}`.
fn ok_or_closed(env: Env<'_>, result: fenix_core::Result<()>) -> Term<'_> {
    match result {
        Ok(()) => atoms::ok().encode(env),
        Err(fenix_core::Error::Capacity(fenix_core::CapacityError::Overloaded(_))) => error(env, atoms::overloaded()),
        Err(_) => error(env, atoms::closed()),
    }
}

fn error(env: Env<'_>, reason: Atom) -> Term<'_> {
    (atoms::error(), reason).encode(env)
}
