//! Panic injection, for the tests of panic containment: with the `fault-injection`
//! feature (never in a build Fenix ships: `mix compile` builds without it), an engine
//! step given a name that starts with [`PANIC`] panics there. Without the feature,
//! [`inject`] is empty and compiles to nothing.
//!
//! The steps: a client message whose event is such a name (the session task of its
//! connection), a broadcast of such an event (the outbound worker), and a presence
//! topic of such a name at its tick (the hub's tick task). `tests/faults.rs` checks that
//! each costs at most its own connection or operation and that the server keeps serving.

/// The name prefix that makes an injection point panic.
pub const PANIC: &str = "fenix:panic";

/// Panics if `name` starts with [`PANIC`] and the feature is on.
#[inline(always)]
pub(crate) fn inject(name: &str) {
    #[cfg(feature = "fault-injection")]
    if name.starts_with(PANIC) {
        panic!("injected panic at {name}");
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}
