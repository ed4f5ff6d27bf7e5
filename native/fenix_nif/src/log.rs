//! The engine's `tracing` events, forwarded to Elixir's `Logger`.
//!
//! Events happen on any thread, scheduler threads included, where an `OwnedEnv` may
//! not send. So they go through a bounded queue to one logging thread, which sends
//! `{:fenix_log, level, message}` to the log target (an endpoint's dispatcher, which
//! calls `Logger`). When the queue is full, events are dropped rather than blocking.
//! Panics are reported the same way.

use std::fmt::Write as _;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Mutex, OnceLock};

use rustler::{Encoder, LocalPid, OwnedEnv};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::atoms;

const QUEUE: usize = 1024;

static TARGET: Mutex<Option<LocalPid>> = Mutex::new(None);
static QUEUE_TX: OnceLock<SyncSender<(Level, String)>> = OnceLock::new();

/// Sends log events to `pid` from now on; installs the forwarding on first use.
pub(crate) fn set_target(pid: LocalPid) {
    *TARGET.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
    QUEUE_TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<(Level, String)>(QUEUE);
        std::thread::Builder::new()
            .name("fenix-log".into())
            .spawn(move || {
                let mut env = OwnedEnv::new();
                for (level, message) in rx {
                    let target = *TARGET.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(pid) = target {
                        let _ = env.send_and_clear(&pid, |env| (atoms::fenix_log(), level_atom(level), message).encode(env));
                    }
                }
            })
            .expect("the logging thread starts");
        // Another library may have set a global subscriber already; then it keeps ours out.
        let _ = tracing::subscriber::set_global_default(Forwarder { max: max_level() });
        report_panics();
        tx
    });
}

/// Panics reach `Logger` as errors, besides the standard report on stderr. The engine
/// contains them (a session's task ends with its connection, the outbound worker and
/// presence ticks go on, a NIF call raises in its caller: see `fenix_core::fault`), but
/// they are bugs, and must be seen where the application's logs are.
fn report_panics() {
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic in the Fenix engine (thread {}): {info}", std::thread::current().name().unwrap_or("unnamed"));
        standard(info);
    }));
}

fn level_atom(level: Level) -> rustler::Atom {
    match level {
        Level::ERROR => atoms::error(),
        Level::WARN => atoms::warning(),
        Level::INFO => atoms::info(),
        _ => atoms::debug(),
    }
}

/// `FENIX_LOG=debug|info|warn|error`; default `info` (Logger filters further).
fn max_level() -> Level {
    match std::env::var("FENIX_LOG").as_deref() {
        Ok("trace") => Level::TRACE,
        Ok("debug") => Level::DEBUG,
        Ok("warn") => Level::WARN,
        Ok("error") => Level::ERROR,
        _ => Level::INFO,
    }
}

struct Forwarder {
    max: Level,
}

impl Subscriber for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        // Spans are not used by the engine; every span shares one id.
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text(String::from("fenix: "));
        event.record(&mut text);
        if let Some(queue) = QUEUE_TX.get() {
            let _ = queue.try_send((*event.metadata().level(), text.0));
        }
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// `message key=value ...`
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}
