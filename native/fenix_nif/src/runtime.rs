//! The tokio runtimes every endpoint of the VM runs on, and the allocator settings an
//! endpoint may ask for.
//!
//! Two runtimes: the main one (`fenix-engine` threads) runs the established
//! connections, the fan-out and presence; the intake (one `fenix-intake` thread at
//! the lowest OS priority, nice 19) accepts, runs handshakes and HTTP requests, the
//! first second of each WebSocket session and the teardown of vanished clients (see
//! `fenix_core::Server::start_with_intake`). The kernel runs the intake only in the
//! time the other threads of the machine leave, so a storm of new or dying
//! connections waits behind the established ones instead of delaying them; when
//! nothing else runs, the intake has the whole core.

use std::sync::{Once, OnceLock};

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INTAKE: OnceLock<Runtime> = OnceLock::new();
static ALLOCATOR_TUNED: Once = Once::new();

/// Worker threads when the first endpoint does not say: 0, one per core.
pub(crate) const DEFAULT_THREADS: usize = 0;

/// Whether an endpoint tunes the allocator when it does not say (see [`tune_allocator`]).
pub(crate) const DEFAULT_TUNE_ALLOCATOR: bool = true;

/// The runtime, started on first use with `threads` workers (0: one per core).
pub(crate) fn get(threads: usize) -> &'static Runtime {
    RUNTIME.get_or_init(|| build(threads))
}

fn build(threads: usize) -> Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder.thread_name("fenix-engine").enable_all().build().expect("the tokio runtime starts")
}

/// The intake runtime, started on first use.
pub(crate) fn intake() -> &'static Runtime {
    INTAKE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fenix-intake")
            .on_thread_start(lowest_priority)
            .enable_all()
            .build()
            .expect("the intake runtime starts")
    })
}

/// Gives the calling thread the lowest scheduling priority (nice 19), which any
/// thread may take for itself.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on the caller's own thread id
    // changes only its niceness, and a failure leaves it as it was.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// The runtime started by the first endpoint. Only called where one has started (an
/// engine object exists), so that the fallback below never starts one by surprise.
pub(crate) fn current() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tracing::warn!("fenix: engine runtime started outside an endpoint");
        build(0)
    })
}

/// glibc gives freed memory at the top of a heap back to the system as soon as 128 KiB
/// of it are free, and the next fan-out faults the same pages in again: in a first
/// fan-out to 10,000 subscribers, `clear_page` took about a third of the server's CPU.
/// Keep up to 64 MiB free before trimming, and grow heaps 16 MiB at a time. This
/// affects `malloc` in the whole VM, where only NIFs and drivers use it (the BEAM's
/// own allocators map their memory themselves), which is why it is an endpoint option
/// rather than done at load. Applied once, by the first endpoint that asks.
pub(crate) fn tune_allocator() {
    ALLOCATOR_TUNED.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; called once.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_TOP_PAD, 16 << 20);
        }
    });
}
