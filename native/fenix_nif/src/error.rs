//! The one mapping of engine errors to the terms Elixir gets: `{:error, reason}`, with
//! each reason documented in `Fenix.Native`.

use fenix_core::server::JoinError;
use fenix_core::{CapacityError, Error};
use rustler::{Encoder, Env, Term};

use crate::atoms;

/// An engine error, as `{:error, reason}`.
pub(crate) struct NifError(pub(crate) Error);

impl Encoder for NifError {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        let reason = match &self.0 {
            Error::Closed => atoms::closed().encode(env),
            // The client does not read: its connection is being dropped.
            Error::Capacity(CapacityError::OutboxFull(_)) => atoms::slow_client().encode(env),
            Error::Capacity(error @ CapacityError::MessageTooLarge { .. }) => {
                (atoms::too_large(), error.to_string()).encode(env)
            }
            Error::Capacity(error @ CapacityError::HeldMessages(_)) => (atoms::held_messages(), error.to_string()).encode(env),
            // Only the reader meets these (it closes the connection); named for completeness.
            Error::Capacity(error @ (CapacityError::TooManyMessages(_) | CapacityError::TooManyJoins(_))) => {
                (atoms::rate_limited(), error.to_string()).encode(env)
            }
            Error::Protocol(error) => (atoms::protocol(), error.to_string()).encode(env),
            Error::Encode(error) => (atoms::encode(), error.to_string()).encode(env),
            Error::Io(error) => (atoms::io(), error.to_string()).encode(env),
        };
        (atoms::error(), reason).encode(env)
    }
}

impl Encoder for JoinErrorTerm {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        let reason = match self.0 {
            JoinError::Closed => atoms::closed(),
            JoinError::Stale => atoms::stale(),
        };
        (atoms::error(), reason).encode(env)
    }
}

/// A join answer that was not taken, as `{:error, :closed | :stale}`.
pub(crate) struct JoinErrorTerm(pub(crate) JoinError);
