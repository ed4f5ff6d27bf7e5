//! Progress on stderr: one self-overwriting line on a terminal, an occasional plain
//! line otherwise. Stdout carries only the JSON result.

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, Instant};

pub struct Ui {
    quiet: bool,
    tty: bool,
    state: RefCell<State>,
}

struct State {
    label: String,
    total: u64,
    last: Option<Instant>,
    shown: Option<u64>,
    open: bool,
}

impl Ui {
    pub fn new(quiet: bool) -> Ui {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(2) } == 1;
        Ui { quiet, tty, state: RefCell::new(State { label: String::new(), total: 0, last: None, shown: None, open: false }) }
    }

    /// Starts a phase: `total` is what `update` counts towards (0 when unknown).
    pub fn phase(&self, label: &str, total: u64) {
        self.end_line();
        let mut s = self.state.borrow_mut();
        s.label = label.to_string();
        s.total = total;
        s.last = None;
        s.shown = None;
        drop(s);
        self.update(0);
    }

    /// Shows `n` (at most every 100 ms on a terminal, every 2 s otherwise).
    pub fn update(&self, n: u64) {
        self.show(n, false);
    }

    /// Shows `n` now unless it is already shown (the end of a phase).
    pub fn flush(&self, n: u64) {
        self.show(n, true);
    }

    fn show(&self, n: u64, force: bool) {
        if self.quiet {
            return;
        }
        let mut s = self.state.borrow_mut();
        let every = if self.tty { Duration::from_millis(100) } else { Duration::from_secs(2) };
        if s.shown == Some(n) || (!force && s.last.is_some_and(|t| t.elapsed() < every)) {
            return;
        }
        s.last = Some(Instant::now());
        s.shown = Some(n);
        let text = if s.total > 0 {
            format!("[fenix-loadgen] {}: {}/{} ({:.0}%)", s.label, n, s.total, n as f64 * 100.0 / s.total as f64)
        } else {
            format!("[fenix-loadgen] {}: {}", s.label, n)
        };
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r\x1b[K{text}");
            s.open = true;
        } else {
            let _ = writeln!(e, "{text}");
        }
        let _ = e.flush();
    }

    /// A line of its own (ends the progress line first).
    pub fn note(&self, msg: &str) {
        if self.quiet {
            return;
        }
        self.end_line();
        eprintln!("[fenix-loadgen] {msg}");
    }

    fn end_line(&self) {
        let mut s = self.state.borrow_mut();
        if s.open {
            eprintln!();
            s.open = false;
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.end_line();
    }
}
