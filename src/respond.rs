//! pH's delay response, userspace half: the kernel stops an anomalous task (SIGSTOP); this resumes
//! it (SIGCONT) when its delay is over, and remembers every stopped task on disk so that no
//! process stays stopped because of ebpfh, even if the monitor is killed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The file, in the state directory, that lists tasks ebpfh has stopped.
pub const STOPPED_FILE: &str = "stopped.json";

/// A process ebpfh stopped, identified by pid and start time so a recycled pid is left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat (clock ticks after boot).
    pub start_time: u64,
    /// CLOCK_TAI ns at which to resume it.
    pub until: u64,
    /// CLOCK_TAI ns at which it was first stopped.
    pub since: u64,
}

/// Why a task was resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    DelayOver,
    MonitorStopping,
    Requested,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::DelayOver => "delay_over",
            Why::MonitorStopping => "monitor_stopping",
            Why::Requested => "requested",
        }
    }
}

pub struct Responder {
    path: PathBuf,
    stopped: BTreeMap<u32, Stopped>,
    dirty: bool,
}

/// Start time of process `pid`, from /proc/PID/stat.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: the fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Responder {
    /// Reads the stopped set left by an earlier monitor (none if the file is absent).
    pub fn open(state_dir: &Path) -> io::Result<Responder> {
        let path = state_dir.join(STOPPED_FILE);
        let stopped = match fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<Stopped> = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("'{}' is corrupt: {e}", path.display()),
                    )
                })?;
                list.into_iter().map(|s| (s.pid, s)).collect()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Responder {
            path,
            stopped,
            dirty: false,
        })
    }

    pub fn stopped(&self) -> impl Iterator<Item = &Stopped> {
        self.stopped.values()
    }

    /// The kernel stopped `pid` at `now` for `delay_ms`; returns when it will be resumed.
    pub fn on_stop(&mut self, pid: u32, delay_ms: u32, now: u64) -> u64 {
        let until = now + u64::from(delay_ms) * 1_000_000;
        let start = start_time(pid).unwrap_or(0);
        let entry = self.stopped.entry(pid).or_insert(Stopped {
            pid,
            start_time: start,
            until,
            since: now,
        });
        // Threads of one process can each be delayed; the process resumes after the longest.
        entry.until = entry.until.max(until);
        self.dirty = true;
        entry.until
    }

    /// When the next stopped task is due.
    pub fn next_due(&self) -> Option<u64> {
        self.stopped.values().map(|s| s.until).min()
    }

    /// Sends SIGCONT to `s` if it is still the process that was stopped.
    fn resume(s: &Stopped) -> bool {
        if start_time(s.pid) != Some(s.start_time) {
            return false; // gone, or the pid now names another process
        }
        kill(Pid::from_raw(s.pid as i32), Signal::SIGCONT).is_ok()
    }

    /// Resumes every task whose delay is over at `now` (all of them with `now = u64::MAX`).
    pub fn resume_due(&mut self, now: u64) -> Vec<(Stopped, bool)> {
        let due: Vec<u32> = self
            .stopped
            .values()
            .filter(|s| s.until <= now)
            .map(|s| s.pid)
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for pid in due {
            if let Some(s) = self.stopped.remove(&pid) {
                let resumed = Self::resume(&s);
                out.push((s, resumed));
                self.dirty = true;
            }
        }
        out
    }

    /// Writes the set if it changed: temporary file, rename. No fsync: the file must outlive the
    /// monitor process (the page cache does), not a power cut (which no stopped process outlives).
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let list: Vec<&Stopped> = self.stopped.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).map_err(io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        // Never through a symlink planted at the temporary name (nor a file left by a crash).
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }
}

/// `ebpfh resume --all`: resumes every process in the state directory's stopped list and empties
/// it; returns how many were still there to resume.
pub fn resume_all(state_dir: &Path) -> io::Result<usize> {
    let mut r = Responder::open(state_dir)?;
    let n = r
        .resume_due(u64::MAX)
        .into_iter()
        .filter(|(_, resumed)| *resumed)
        .count();
    if r.dirty {
        r.save()?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn start_time_reads_past_odd_command_names() {
        let me = start_time(std::process::id()).expect("own start time");
        assert!(me > 0);
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn a_stopped_child_is_resumed_when_due_and_the_set_persists() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();

        let mut r = Responder::open(dir.path()).unwrap();
        let until = r.on_stop(pid, 50, 1_000);
        assert_eq!(until, 1_000 + 50_000_000);
        assert_eq!(
            r.on_stop(pid, 10, 2_000),
            until,
            "a shorter delay never shortens the stop"
        );
        r.save().unwrap();

        // A new monitor finds it.
        let mut again = Responder::open(dir.path()).unwrap();
        assert_eq!(again.stopped().count(), 1);
        assert!(again.resume_due(until - 1).is_empty(), "not due yet");
        let resumed = again.resume_due(until);
        assert_eq!(resumed.len(), 1);
        assert!(resumed[0].1, "SIGCONT reached the child");
        again.save().unwrap();
        assert_eq!(Responder::open(dir.path()).unwrap().stopped().count(), 0);

        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let st = state[state.rfind(')').unwrap() + 2..]
            .chars()
            .next()
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_ne!(st, 'T', "the child is no longer stopped");
    }

    #[test]
    fn a_recycled_pid_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Responder::open(dir.path()).unwrap();
        r.on_stop(std::process::id(), 1, 0);
        // Pretend the stopped process had another start time: the pid now names someone else.
        r.stopped.get_mut(&std::process::id()).unwrap().start_time += 1;
        let resumed = r.resume_due(u64::MAX);
        assert_eq!(resumed.len(), 1);
        assert!(!resumed[0].1, "no signal was sent");
    }

    #[test]
    fn a_corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STOPPED_FILE), b"{not json").unwrap();
        let err = Responder::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }
}
