//! The calling process as an engine [`Sender`]: its sends keep their order, and when
//! its lane is full it is told `:wait` and woken with a `:fenix_resume` message.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::task::{Wake, Waker};

use fenix_core::server::{Pace, Sender};
use rustler::{Atom, Encoder, Env, LocalPid};

use crate::atoms;
use crate::beam;

/// Runs `f` with the calling process as the sender.
pub(crate) fn with_caller<R>(env: Env<'_>, f: impl FnOnce(Sender<'_>) -> R) -> R {
    with_pid(env, env.pid(), f)
}

/// Runs `f` with `pid` as the sender (a channel's down callback speaks for its dead process).
pub(crate) fn with_pid<R>(env: Env<'_>, pid: LocalPid, f: impl FnOnce(Sender<'_>) -> R) -> R {
    let waker = move || Waker::from(Arc::new(Resume(pid)));
    f(Sender { id: id(env, pid), waker: &waker })
}

/// A local pid is an immediate term: its bits identify the process. rustler keeps
/// them private but hashes them as they are, so a hasher that keeps what it is given
/// reads them out.
pub(crate) fn id(env: Env<'_>, pid: LocalPid) -> u64 {
    let mut bits = TermBits(0);
    pid.encode(env).as_c_arg().hash(&mut bits);
    bits.0
}

struct TermBits(u64);

impl Hasher for TermBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a term (it writes one usize); folded in anyway.
        self.0 = bytes.iter().fold(self.0, |acc, b| acc.rotate_left(8) ^ u64::from(*b));
    }

    fn write_usize(&mut self, bits: usize) {
        self.0 = bits as u64;
    }
}

/// `:ok` or `:wait`.
pub(crate) fn pace_atom(pace: Pace) -> Atom {
    match pace {
        Pace::Go => atoms::ok(),
        Pace::Wait => atoms::wait(),
    }
}

/// Wakes a process told to wait. The engine's worker wakes it, on an engine thread.
struct Resume(LocalPid);

impl Wake for Resume {
    fn wake(self: Arc<Self>) {
        beam::send(&self.0, |env| atoms::fenix_resume().encode(env));
    }
}
