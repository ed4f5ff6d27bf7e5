//! The NIF functions, by area. Each decodes its arguments, makes one call into
//! `fenix_core`, and encodes the result: `:ok` or `:wait` (the caller must wait for
//! `:fenix_resume`, see `sender.rs`), `{:ok, value}`, or `{:error, reason}` through the
//! one error mapping of `error.rs`.

mod broadcast;
mod channel;
mod conn;
mod endpoint;
mod presence;
mod pubsub;
mod transport;

use fenix_core::server::Pace;
use rustler::{Atom, Encoder, Env, Term};

use crate::atoms;
use crate::error::NifError;
use crate::sender::pace_atom;

/// `:ok`, `:wait` or `{:error, reason}`.
fn paced(env: Env<'_>, result: fenix_core::Result<Pace>) -> Term<'_> {
    match result {
        Ok(pace) => pace_atom(pace).encode(env),
        Err(error) => NifError(error).encode(env),
    }
}

fn error(env: Env<'_>, reason: Atom) -> Term<'_> {
    (atoms::error(), reason).encode(env)
}
