//! The one tokio runtime that every endpoint of the VM runs on.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime, started on first use with `threads` workers (0: one per core).
pub(crate) fn get(threads: usize) -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            builder.worker_threads(threads);
        }
        builder.thread_name("fenix-engine").enable_all().build().expect("the tokio runtime starts")
    })
}
