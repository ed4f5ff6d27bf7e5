//! Runs the client groups of a scenario: in this process (`--processes 1`), or in K
//! child processes of this same binary (`fenix-loadgen __worker <spec json>`), which
//! talk to the parent in lines over their stdin/stdout:
//!
//! ```text
//! child  -> parent   P <progress>        (any time)
//! child  -> parent   READY               (all its clients connected and joined)
//! parent -> child    GO <go json>        (start the measured phase)
//! child  -> parent   DONE <result json>  (phase over)
//! parent -> child    CLOSE               (drop the connections and exit)
//! child  -> parent   CLOSED <n>          (n held connections had been closed by the server)
//! child  -> parent   ERR <message>       (fatal; the child exits)
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{spawn_local, JoinHandle};
use tokio::time::{interval, sleep_until, Instant};

use crate::group::{Go, Group, GroupResult, GroupSpec};
use crate::ui::Ui;

const TICK: Duration = Duration::from_millis(200);

pub enum Workers {
    Local { g: Rc<Group>, run: Option<JoinHandle<GroupResult>> },
    Remote(Remote),
}

pub struct Remote {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    rx: mpsc::UnboundedReceiver<(usize, String)>,
    progress: Vec<u64>,
}

impl Workers {
    /// Sets the groups up (connect + join) and returns once all of them are ready.
    pub async fn start(mut specs: Vec<GroupSpec>, processes: usize, ui: &Ui, limit: Duration) -> Result<Workers, String> {
        if processes <= 1 && specs.len() == 1 {
            let g = Group::new(specs.remove(0))?;
            // From here on, dropping `w` ends the clients started so far.
            let w = Workers::Local { g: g.clone(), run: None };
            {
                let setup = g.setup();
                tokio::pin!(setup);
                let mut tick = interval(TICK);
                loop {
                    tokio::select! {
                        r = &mut setup => { r?; break; }
                        _ = tick.tick() => ui.update(g.progress()),
                    }
                }
            }
            ui.flush(g.progress());
            return Ok(w);
        }
        let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut remote = Remote { children: Vec::new(), stdins: Vec::new(), rx, progress: vec![0; specs.len()] };
        for (i, spec) in specs.iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("__worker")
                .arg(serde_json::to_string(spec).expect("spec serializes"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start worker process: {e}"))?;
            let out = child.stdout.take().expect("piped stdout");
            remote.stdins.push(child.stdin.take().expect("piped stdin"));
            remote.children.push(child);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((i, line)).is_err() {
                        return;
                    }
                }
                let _ = tx.send((i, "EOF".to_string()));
            });
        }
        remote.wait_all("READY", ui, Instant::now() + limit + Duration::from_secs(5)).await?;
        Ok(Workers::Remote(remote))
    }

    /// Starts the measured phase everywhere.
    pub fn go(&mut self, go: Go) -> Result<(), String> {
        match self {
            Workers::Local { g, run } => {
                *run = Some(spawn_local(g.clone().run(go)));
                Ok(())
            }
            Workers::Remote(r) => r.send_all(&format!("GO {}", serde_json::to_string(&go).expect("go serializes"))),
        }
    }

    /// Waits for the phase to end everywhere; `limit` is a safety net past the groups' own deadline.
    pub async fn done(&mut self, ui: &Ui, limit: Instant) -> Result<Vec<GroupResult>, String> {
        match self {
            Workers::Local { g, run } => {
                let mut h = run.take().ok_or("phase not started")?;
                let mut tick = interval(TICK);
                loop {
                    tokio::select! {
                        r = &mut h => {
                            ui.flush(g.progress());
                            return r.map(|r| vec![r]).map_err(|e| format!("phase task failed: {e}"));
                        }
                        _ = tick.tick() => ui.update(g.progress()),
                        _ = sleep_until(limit) => return Err("phase did not end in time".to_string()),
                    }
                }
            }
            Workers::Remote(r) => {
                let lines = r.wait_all("DONE", ui, limit).await?;
                lines
                    .iter()
                    .map(|l| serde_json::from_str(l).map_err(|e| format!("bad worker result: {e}")))
                    .collect()
            }
        }
    }

    /// Closes every connection; returns how many held connections the server had closed.
    /// (Dropping `Workers` closes them too, without that count.)
    pub async fn close(&mut self) -> u64 {
        match self {
            Workers::Local { g, run } => {
                if let Some(h) = run.take() {
                    h.abort();
                }
                g.close()
            }
            Workers::Remote(r) => {
                let mut closed = 0;
                if r.send_all("CLOSE").is_ok() {
                    if let Ok(lines) = r.wait_all("CLOSED", &Ui::new(true), Instant::now() + Duration::from_secs(10)).await {
                        closed = lines.iter().filter_map(|l| l.parse::<u64>().ok()).sum();
                    }
                }
                let until = Instant::now() + Duration::from_secs(5);
                for c in &mut r.children {
                    while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                closed // Drop kills any child still running
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Workers::Local { g, run } = self {
            if let Some(h) = run.take() {
                h.abort();
            }
            g.close();
        }
        // Remote: its own Drop kills the children still running.
    }
}

impl Remote {
    fn send_all(&mut self, line: &str) -> Result<(), String> {
        for (i, s) in self.stdins.iter_mut().enumerate() {
            writeln!(s, "{line}").and_then(|_| s.flush()).map_err(|e| format!("worker {i}: {e}"))?;
        }
        Ok(())
    }

    /// Waits for `tag` from every child; returns what followed the tag on each line.
    async fn wait_all(&mut self, tag: &str, ui: &Ui, deadline: Instant) -> Result<Vec<String>, String> {
        let mut got: Vec<Option<String>> = vec![None; self.children.len()];
        let mut tick = interval(TICK);
        while got.iter().any(Option::is_none) {
            tokio::select! {
                m = self.rx.recv() => {
                    let (i, line) = m.ok_or("worker processes are gone")?;
                    if let Some(p) = line.strip_prefix("P ") {
                        self.progress[i] = p.trim().parse().unwrap_or(self.progress[i]);
                    } else if let Some(rest) = line.strip_prefix(tag).filter(|r| r.is_empty() || r.starts_with(' ')) {
                        got[i] = Some(rest.trim().to_string());
                    } else if let Some(e) = line.strip_prefix("ERR ") {
                        return Err(format!("worker {i}: {e}"));
                    } else if line == "EOF" {
                        return Err(format!("worker {i} exited before {tag}"));
                    }
                }
                _ = tick.tick() => ui.update(self.progress.iter().sum()),
                _ = sleep_until(deadline) => return Err(format!("worker processes did not report {tag} in time")),
            }
        }
        ui.flush(self.progress.iter().sum());
        Ok(got.into_iter().map(|g| g.unwrap_or_default()).collect())
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Entry point of a worker process; returns the exit code.
pub fn worker_main(spec_json: &str) -> i32 {
    crate::sys::raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let fail = |e: String| {
            println!("ERR {}", e.replace('\n', " "));
            2
        };
        let spec: GroupSpec = match serde_json::from_str(spec_json) {
            Ok(s) => s,
            Err(e) => return fail(format!("bad worker spec: {e}")),
        };
        let g = match Group::new(spec) {
            Ok(g) => g,
            Err(e) => return fail(e),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let gp = g.clone();
        let reporter = spawn_local(async move {
            let mut last = u64::MAX;
            let mut tick = interval(TICK);
            loop {
                tick.tick().await;
                let p = gp.progress();
                if p != last {
                    println!("P {p}");
                    last = p;
                }
            }
        });
        if let Err(e) = g.setup().await {
            return fail(e);
        }
        println!("READY");
        let go: Go = loop {
            match rx.recv().await {
                Some(l) => {
                    if let Some(j) = l.strip_prefix("GO ") {
                        match serde_json::from_str(j) {
                            Ok(go) => break go,
                            Err(e) => return fail(format!("bad GO: {e}")),
                        }
                    }
                }
                None => return 0,
            }
        };
        let r = g.clone().run(go).await;
        reporter.abort();
        println!("P {}", g.progress());
        println!("DONE {}", serde_json::to_string(&r).expect("result serializes"));
        while let Some(l) = rx.recv().await {
            if l == "CLOSE" {
                break;
            }
        }
        let closed = g.close();
        println!("CLOSED {closed}");
        0
    })
}
