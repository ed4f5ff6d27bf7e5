//! Clocks, /proc sampling of the server process (CPU, RSS, open descriptors), and the
//! open-files limit.

use std::collections::HashMap;
use std::fs;
use std::io;

/// CLOCK_MONOTONIC in ns: one clock shared by every process of the machine, so send
/// stamps from the parent and receive times in worker processes compare directly.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// (ppid, utime + stime in clock ticks) from the text of /proc/P/stat.
pub fn parse_stat(text: &str) -> Option<(u32, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces and ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// VmRSS in bytes from the text of /proc/P/status.
pub fn parse_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `pid` and all of its descendants (the given pid may be a wrapper such as `taskset`
/// or a shell script that runs the real server as a child).
fn tree(pid: u32) -> io::Result<Vec<u32>> {
    fs::metadata(format!("/proc/{pid}/stat"))?;
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in fs::read_dir("/proc")?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(t) = fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some((ppid, _)) = parse_stat(&t) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().copied());
        }
        i += 1;
    }
    Ok(out)
}

/// The server's process tree, found once and then sampled cheaply: the `flood` scenario
/// reads its RSS ten times a second, and walking all of /proc each time would cost the
/// load generator's core more than the sample is worth. (A server does not start new
/// processes while it is measured.)
#[derive(Debug)]
pub struct ProcTree {
    pids: Vec<u32>,
}

impl ProcTree {
    pub fn of(pid: u32) -> io::Result<ProcTree> {
        Ok(ProcTree { pids: tree(pid)? })
    }

    /// CPU time (user + system) used so far by the tree, in ns.
    pub fn cpu_ns(&self) -> u64 {
        let ticks: u64 = self
            .pids
            .iter()
            .filter_map(|p| fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .filter_map(|t| parse_stat(&t).map(|(_, ticks)| ticks))
            .sum();
        ticks * 1_000_000_000 / clk_tck()
    }

    /// Open file descriptors of the tree (entries of `/proc/P/fd`).
    pub fn fds(&self) -> u64 {
        self.pids.iter().filter_map(|p| fs::read_dir(format!("/proc/{p}/fd")).ok()).map(|d| d.count() as u64).sum()
    }

    /// Resident memory of the tree, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.pids
            .iter()
            .filter_map(|p| fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|t| parse_rss(&t))
            .sum()
    }
}

/// CPU time (user + system) used so far by the server process tree, in ns.
pub fn cpu_ns(pid: u32) -> io::Result<u64> {
    Ok(ProcTree::of(pid)?.cpu_ns())
}

/// Resident memory of the server process tree, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    Ok(ProcTree::of(pid)?.rss_bytes())
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit { rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    rl.rlim_cur
}

/// Gives the calling thread the lowest scheduling priority (nice 19).
pub fn lowest_priority() {
    // SAFETY: gettid has no preconditions; setpriority on the caller's own thread id
    // only changes its niceness, and a failure leaves it as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let t = "1234 (beam.smp) S 1200 1234 1200 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 30 0 5000 100000 2000";
        assert_eq!(parse_stat(t), Some((1200, 325)));
        let t = "99 (a (weird) name) R 1 99 99 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat(t), Some((1, 10)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_proc_status() {
        let t = "Name:\tbeam.smp\nVmPeak:\t  9000 kB\nVmRSS:\t   51200 kB\nThreads:\t30\n";
        assert_eq!(parse_rss(t), Some(51200 * 1024));
        assert_eq!(parse_rss("Name: x\n"), None);
    }

    #[test]
    fn samples_own_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        let _ = cpu_ns(me).unwrap();
        let t = ProcTree::of(me).unwrap();
        assert!(t.rss_bytes() > 0);
        assert!(t.fds() >= 3, "stdin, stdout, stderr at least");
        assert!(ProcTree::of(u32::MAX).is_err());
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a);
    }

    #[test]
    fn tree_holds_descendants() {
        let mut child = std::process::Command::new("sleep").arg("10").spawn().unwrap();
        let t = ProcTree::of(std::process::id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(t.pids[0], std::process::id());
        assert!(t.pids.contains(&child.id()), "{:?} lacks {}", t.pids, child.id());
    }
}
