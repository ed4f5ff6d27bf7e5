//! Rustler bindings: the Fenix engine inside the BEAM. Kept thin: every NIF decodes
//! its arguments, makes one call into `fenix_core`, and encodes the result.
#![warn(missing_debug_implementations, unreachable_pub)]
#![deny(unused_must_use)]

mod atoms;
mod beam;
mod client_ref;
mod error;
mod etf;
mod log;
mod monitors;
mod nif;
mod pubsub;
mod resources;
mod runtime;
mod sender;
mod term;

rustler::init!("Elixir.Fenix.Native");
