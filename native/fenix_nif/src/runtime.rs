//! The one tokio runtime that every endpoint of the VM runs on, and the allocator
//! settings it needs.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

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
/// own allocators map their memory themselves).
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once, at load.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}
