//! JSON lines: one event per line, written per batch of events, reopened on SIGHUP. [`Record`] is the
//! schema (README's "Events" lists it for users); [`Record::from_event`] is the one mapping from
//! an [`Event`] to a line, used by the monitor and by replay; [`Line`] reads one back (the
//! dashboard).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;
use crate::event::Event;
use crate::profile::{ProfileKey, State};

/// The process an event is about.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: String,
    /// The task's cgroup v2 path (`/system.slice/ssh.service`); the monitor always knows it
    /// where cgroup2 is mounted, replayed traces never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The container the cgroup belongs to (see `cgroup::container_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// The profile an event is about.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileRef {
    pub profile: String,
    pub profile_state: State,
    /// A script profile's script (its interpreter is `exe`); absent for other profiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

impl ProfileRef {
    pub fn new(key: ProfileKey, state: State) -> Self {
        ProfileRef {
            profile: key.to_string(),
            profile_state: state,
            script: None,
        }
    }

    /// With the script of a script profile (nothing if `script` is empty).
    pub fn with_script(mut self, script: &str) -> Self {
        self.script = (!script.is_empty()).then(|| script.to_string());
        self
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Syscall {
    pub nr: u16,
    pub name: Name,
}

/// A system call's name in a line: the monitor's come from the syscall table and are borrowed
/// from it, so a line's window of names costs no allocation; lines read back own theirs.
pub type Name = std::borrow::Cow<'static, str>;

fn yes() -> bool {
    true
}

/// Every kind of line, with its own fields; common fields are added by [`Line`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    Anomaly {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        syscall: Syscall,
        misses: u16,
        /// Of the `misses`, the pairs new to the profile; the others were pending (shown by
        /// an earlier call). Absent in lines written before it existed.
        #[serde(default)]
        new_pairs: u16,
        /// The call has no pair at all in the testing data: the program never made it.
        #[serde(default)]
        unknown_call: bool,
        /// The window, oldest to newest; the last entry is `syscall`.
        sequence: Vec<Name>,
        lfc: u32,
        profile_anomalies: u64,
    },
    ProfileCreated {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        /// SHA-256 of the executable's bytes (null if it could not be read).
        sha256: Option<crate::identity::Digest>,
    },
    NormalStarted {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        train_count: u64,
        last_mod_count: u64,
        sequences: u64,
    },
    NormalStopped {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        reason: String,
        profile_anomalies: u64,
    },
    TolerizeLimit {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        lfc: u32,
    },
    NewSequence {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        sequence: Vec<Name>,
    },
    /// The ebpfh lifecycle made `pending` pair sets of a normal profile testing data, after
    /// enough clean runs.
    PendingAccepted {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        pending: u32,
    },
    /// A burst of anomalies in one task, when it is over (see `src/incident.rs`).
    Incident {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        /// Times of its first and last anomalous call.
        first: String,
        last: String,
        /// Why it ended: `idle`, `exit`, `exec`, `max_duration`, `max_calls`, `stopped`.
        reason: String,
        anomalous_calls: u64,
        max_lfc: u32,
        /// The anomalous calls by name, with how often each was anomalous.
        syscalls: std::collections::BTreeMap<Name, u64>,
        /// The window of its first anomalous call, oldest first.
        first_sequence: Vec<Name>,
        /// Anomalous calls that have their own `anomaly` line, and those that do not.
        anomaly_lines: u64,
        anomaly_lines_suppressed: u64,
        profile_anomalies: u64,
        /// Whether it is an alarm (see `src/incident.rs`); quiet incidents are only written
        /// with `--log-quiet`. Absent (an alarm) in lines written before it existed.
        #[serde(default = "yes")]
        alarm: bool,
        /// Which part of the alarm rule decided: `unknown_call`, `tolerize_limit`,
        /// `every_anomaly`, or, for a quiet incident, `repeat` or `minor`.
        #[serde(default)]
        alarm_reason: String,
        /// Anomalous calls of system calls the profile never made (`unknown_call`).
        #[serde(default)]
        unknown_calls: u64,
        /// Anomalous calls that taught the profile at least one new pair (the others only
        /// repeated pending pairs).
        #[serde(default)]
        novel_calls: u64,
    },
    /// The kernel stopped the process (pH's delay response); it resumes after `delay_ms`.
    Delay {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        lfc: u32,
        delay_ms: u32,
    },
    /// execve refused because the task's LFC exceeded abort_execve (`killed`: it was killed too).
    ExecveDenied {
        #[serde(flatten)]
        process: Process,
        #[serde(flatten)]
        profile: ProfileRef,
        lfc: u32,
        filename: String,
        killed: bool,
    },
    /// A process ebpfh had stopped runs again (`resumed` false: it had exited meanwhile).
    Resumed {
        pid: u32,
        stopped_ms: u64,
        reason: String,
        resumed: bool,
    },
    EventsLost {
        /// Lost since the previous `events_lost` line, by event name.
        lost: std::collections::BTreeMap<String, u64>,
        /// Failed kernel map inserts since the previous line, by what failed.
        failed: std::collections::BTreeMap<String, u64>,
    },
    /// An operator asked the monitor for something that changes state (`ebpfh normalize`,
    /// `set`, `save`, a key in `ebpfh top`): who asked (SO_PEERCRED), what, and how it went.
    Command {
        peer_uid: u32,
        peer_pid: i32,
        command: String,
        /// What the request named (`profile /usr/bin/ls`, `pid 42`).
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        exe: Option<String>,
        /// The profile's state after the command.
        #[serde(skip_serializing_if = "Option::is_none")]
        profile_state: Option<State>,
        #[serde(skip_serializing_if = "Option::is_none")]
        setting: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// `ok` or `failed`.
        result: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A bundle's profile was imported (`ebpfh profile import`), or a pending one applied when
    /// its executable first ran: `result` is `merged`, `created` or `pending`.
    ProfileImported {
        #[serde(flatten)]
        outcome: crate::fleet::Outcome,
    },
    MonitorStarted {
        version: String,
        pid: u32,
        /// Which responses are active: `delay`, `execve_abort`.
        responses: Vec<String>,
        profiles_loaded: usize,
        profiles_set_aside: usize,
        state_dir: String,
    },
    MonitorStopped {
        pid: u32,
        reason: String,
        profiles_saved: usize,
        profiles_failed: usize,
    },
}

/// What a line says beyond its event: the monitor knows it from the kernel and the system,
/// replay from the trace. A field that only some kinds carry goes here as an `Option`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// Who caused the event.
    pub process: Process,
    /// Which profile, in which state.
    pub profile: ProfileRef,
    /// `profile_created`: the executable's content identity, if it could be read.
    pub sha256: Option<crate::identity::Digest>,
}

impl Record {
    /// The line for an event in its context; `name` names a call's symbol.
    pub fn from_event(e: &Event, cx: Context, name: impl Fn(u16) -> Name) -> Record {
        let Context {
            process,
            profile,
            sha256,
        } = cx;
        let sequence = |w: &[u16]| w.iter().map(|&s| name(s)).collect();
        match e {
            Event::ProfileCreated { .. } => Record::ProfileCreated {
                process,
                profile,
                sha256,
            },
            Event::Anomaly {
                window,
                misses,
                new_pairs,
                unknown,
                lfc,
                profile_anomalies,
                ..
            } => {
                let call = window[window.len() - 1];
                Record::Anomaly {
                    process,
                    profile,
                    syscall: Syscall {
                        nr: call,
                        name: name(call),
                    },
                    misses: *misses,
                    new_pairs: *new_pairs,
                    unknown_call: *unknown,
                    sequence: sequence(window),
                    lfc: *lfc,
                    profile_anomalies: *profile_anomalies,
                }
            }
            Event::NormalStarted { before, .. } => Record::NormalStarted {
                process,
                profile,
                train_count: before.train_count,
                last_mod_count: before.last_mod_count,
                sequences: before.sequences,
            },
            Event::NormalStopped {
                counters, reason, ..
            } => Record::NormalStopped {
                process,
                profile,
                reason: reason.as_str().into(),
                profile_anomalies: counters.anomalies,
            },
            Event::TolerizeLimit { lfc, .. } => Record::TolerizeLimit {
                process,
                profile,
                lfc: *lfc,
            },
            Event::NewSequence { window, .. } => Record::NewSequence {
                process,
                profile,
                sequence: sequence(window),
            },
            Event::PendingAccepted { pending, .. } => Record::PendingAccepted {
                process,
                profile,
                pending: *pending,
            },
            Event::Delay { delay_ms, lfc, .. } => Record::Delay {
                process,
                profile,
                lfc: *lfc,
                delay_ms: *delay_ms,
            },
            Event::ExecveDenied {
                lfc,
                killed,
                filename,
                ..
            } => Record::ExecveDenied {
                process,
                profile,
                lfc: *lfc,
                filename: filename.clone(),
                killed: *killed,
            },
        }
    }

    /// The `event` field: the kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Anomaly { .. } => "anomaly",
            Record::ProfileCreated { .. } => "profile_created",
            Record::NormalStarted { .. } => "normal_started",
            Record::NormalStopped { .. } => "normal_stopped",
            Record::TolerizeLimit { .. } => "tolerize_limit",
            Record::NewSequence { .. } => "new_sequence",
            Record::PendingAccepted { .. } => "pending_accepted",
            Record::Incident { .. } => "incident",
            Record::Delay { .. } => "delay",
            Record::ExecveDenied { .. } => "execve_denied",
            Record::Resumed { .. } => "resumed",
            Record::EventsLost { .. } => "events_lost",
            Record::Command { .. } => "command",
            Record::ProfileImported { .. } => "profile_imported",
            Record::MonitorStarted { .. } => "monitor_started",
            Record::MonitorStopped { .. } => "monitor_stopped",
        }
    }
}

/// One JSON line read back: the common fields and the record.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Line {
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub host: String,
    #[serde(flatten)]
    pub record: Record,
}

impl Line {
    /// Parses one line as [`to_line`] writes it; None for what is not such a line (or a kind this
    /// version does not know).
    pub fn parse(line: &str) -> Option<Line> {
        serde_json::from_str(line).ok()
    }
}

/// Serialises one record as a single line (no trailing newline), common fields first:
/// `time`, `event`, `host`, then the record's own fields in declaration order.
pub fn to_line(time: DateTime<Utc>, host: &str, record: &Record) -> String {
    let mut line = Vec::with_capacity(512);
    append_line(&mut line, time, host, record);
    String::from_utf8(line).expect("serde_json writes UTF-8")
}

/// [`to_line`] appended to `out`, without building the line as a JSON value first: the record is
/// serialised straight after `time`, and `host` is spliced in after its `event` tag (the tag of
/// an internally tagged enum is always its first field).
pub fn append_line(out: &mut Vec<u8>, time: DateTime<Utc>, host: &str, record: &Record) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(rfc3339(time).as_bytes());
    out.extend_from_slice(b"\",");
    if let Record::Anomaly { .. } = record {
        append_anomaly(out, host, record);
    } else {
        append_serde(out, host, record);
    }
}

/// A line's part after `time` through serde: the record, with `host` after its tag.
fn append_serde(out: &mut Vec<u8>, host: &str, record: &Record) {
    let start = out.len();
    serde_json::to_writer(&mut *out, record).expect("records are plain data");
    // `{"event":"kind"` then `,` or `}`: drop the brace, keep the tag, add the host after it.
    let tag_end = start + "{\"event\":\"\"".len() + record.kind().len();
    debug_assert!(out[start..].starts_with(format!("{{\"event\":\"{}\"", record.kind()).as_bytes()));
    out.remove(start);
    let mut host_field = Vec::with_capacity(host.len() + 10);
    host_field.extend_from_slice(b",\"host\":");
    serde_json::to_writer(&mut host_field, host).expect("a string serialises");
    let at = tag_end - 1;
    out.splice(at..at, host_field);
}

/// An `anomaly` line after its `time`, written field by field in the order serde writes them: a
/// storm makes one line per anomalous call, and through serde the flattened `process` and
/// `profile` go through a map serializer and the host is spliced in after the tag, which cost
/// more than all else the monitor does for the line. Strings and numbers are still written by
/// serde_json, so the bytes are the same (`anomaly_lines_are_serdes_byte_for_byte`).
fn append_anomaly(out: &mut Vec<u8>, host: &str, record: &Record) {
    let Record::Anomaly {
        process,
        profile,
        syscall,
        misses,
        new_pairs,
        unknown_call,
        sequence,
        lfc,
        profile_anomalies,
    } = record
    else {
        unreachable!("called for anomaly lines only")
    };
    fn str(out: &mut Vec<u8>, s: &str) {
        serde_json::to_writer(&mut *out, s).expect("a string serialises");
    }
    fn val(out: &mut Vec<u8>, v: impl Serialize) {
        serde_json::to_writer(&mut *out, &v).expect("plain data serialises");
    }
    out.extend_from_slice(b"\"event\":\"anomaly\",\"host\":");
    str(out, host);
    let Process {
        pid,
        tid,
        ppid,
        uid,
        comm,
        exe,
        cgroup,
        container_id,
    } = process;
    for (key, n) in [
        (&b",\"pid\":"[..], pid),
        (b",\"tid\":", tid),
        (b",\"ppid\":", ppid),
        (b",\"uid\":", uid),
    ] {
        out.extend_from_slice(key);
        val(out, n);
    }
    out.extend_from_slice(b",\"comm\":");
    str(out, comm);
    out.extend_from_slice(b",\"exe\":");
    str(out, exe);
    if let Some(c) = cgroup {
        out.extend_from_slice(b",\"cgroup\":");
        str(out, c);
    }
    if let Some(c) = container_id {
        out.extend_from_slice(b",\"container_id\":");
        str(out, c);
    }
    out.extend_from_slice(b",\"profile\":");
    str(out, &profile.profile);
    out.extend_from_slice(b",\"profile_state\":");
    val(out, profile.profile_state);
    if let Some(s) = &profile.script {
        out.extend_from_slice(b",\"script\":");
        str(out, s);
    }
    out.extend_from_slice(b",\"syscall\":{\"nr\":");
    val(out, syscall.nr);
    out.extend_from_slice(b",\"name\":");
    str(out, &syscall.name);
    out.extend_from_slice(b"},\"misses\":");
    val(out, misses);
    out.extend_from_slice(b",\"new_pairs\":");
    val(out, new_pairs);
    out.extend_from_slice(if *unknown_call {
        b",\"unknown_call\":true,\"sequence\":["
    } else {
        b",\"unknown_call\":false,\"sequence\":["
    });
    for (i, name) in sequence.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        str(out, name);
    }
    out.extend_from_slice(b"],\"lfc\":");
    val(out, lfc);
    out.extend_from_slice(b",\"profile_anomalies\":");
    val(out, profile_anomalies);
    out.push(b'}');
}

/// Where lines go: a file (reopened on SIGHUP for logrotate) or standard output.
///
/// Lines are collected in memory and written together by [`Sink::flush`], which the monitor
/// calls once per batch of kernel events and whenever the ring buffer goes idle: one `write`
/// per batch instead of one per line, and a reader (`tail -f`) still sees every line within
/// that batch's time.
pub struct Sink {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
    /// The open log file, to notice that it was deleted or moved away (see [`Sink::check_path`]).
    file: Option<File>,
    /// Reopening the path failed; said once until it works again.
    reopen_failed: bool,
    host: String,
    /// Lines not yet written, and how many there are.
    buf: Vec<u8>,
    buffered: u64,
    /// Lines that could not be written (e.g. disk full), reported once per failure streak.
    pub failed: u64,
}

/// Buffered lines are written once they pass this many bytes, even within a batch.
const FLUSH_BYTES: usize = 1 << 20;

impl Sink {
    /// `-` means standard output; anything else must be a regular file (created if missing).
    pub fn open(target: &str, host: String) -> io::Result<Sink> {
        if target == "-" {
            widen_pipe(&io::stdout());
            return Ok(Sink {
                path: None,
                out: Box::new(io::stdout()),
                file: None,
                reopen_failed: false,
                host,
                buf: Vec::with_capacity(FLUSH_BYTES + 4096),
                buffered: 0,
                failed: 0,
            });
        }
        let path = PathBuf::from(target);
        let file = Self::open_file(&path)?;
        Ok(Sink {
            path: Some(path),
            out: Box::new(file.try_clone()?),
            file: Some(file),
            reopen_failed: false,
            host,
            buf: Vec::with_capacity(FLUSH_BYTES + 4096),
            buffered: 0,
            failed: 0,
        })
    }

    /// Opens the log for appending without following a symlink and without blocking: a FIFO
    /// would otherwise hang the monitor until some reader came, and a device is no log.
    fn open_file(path: &Path) -> io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => io::Error::new(
                    e.kind(),
                    "it is a symbolic link; give the path of the file itself",
                ),
                Some(libc::ENXIO) => io::Error::new(
                    e.kind(),
                    "it is a FIFO, not a regular file; --log takes a regular file or '-' (standard output)",
                ),
                _ => e,
            })?;
        let kind = file.metadata()?.file_type();
        if !kind.is_file() {
            let what = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "not a file"
            };
            return Err(io::Error::other(format!(
                "it is {what}, not a regular file; --log takes a regular file or '-' (standard output)"
            )));
        }
        // Appends to a regular file never block anyway; clear the flag so nothing depends on it.
        let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
        fcntl(&file, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
        Ok(file)
    }

    /// Reopens the file by name, so a rotated log is followed by a fresh one.
    pub fn reopen(&mut self) -> io::Result<()> {
        // What was read before the rotation belongs in the file that was rotated.
        self.flush();
        if let Some(path) = &self.path {
            let file = Self::open_file(path)?;
            self.out = Box::new(file.try_clone()?);
            self.file = Some(file);
        }
        Ok(())
    }

    /// Notices a log file that was deleted, or moved or replaced without a SIGHUP: its lines
    /// would go nowhere anyone looks. Says so once and reopens the path. Called periodically.
    pub fn check_path(&mut self) {
        let (Some(path), Some(file)) = (&self.path, &self.file) else {
            return;
        };
        let Ok(open) = file.metadata() else {
            return;
        };
        let why = if open.nlink() == 0 {
            "was deleted"
        } else {
            match std::fs::metadata(path) {
                Ok(m) if (m.dev(), m.ino()) == (open.dev(), open.ino()) => return,
                Ok(_) => "was replaced by another file",
                Err(_) => "was moved away",
            }
        };
        let shown = path.display().to_string();
        match self.reopen() {
            Ok(()) => {
                log::warn!("the event log '{shown}' {why} without a SIGHUP; writing to a new file at that path from now on");
                self.reopen_failed = false;
            }
            Err(e) if !self.reopen_failed => {
                log::error!("the event log '{shown}' {why} and cannot be opened again ({e}); events go to the old file until it can");
                self.reopen_failed = true;
            }
            Err(_) => {}
        }
    }

    /// Adds a record's line and returns it (without its newline); it is written by the next
    /// [`Sink::flush`], or sooner if many lines are waiting.
    pub fn write(&mut self, time: DateTime<Utc>, record: &Record) -> &str {
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
        let start = self.buf.len();
        append_line(&mut self.buf, time, &self.host, record);
        let end = self.buf.len();
        self.buf.push(b'\n');
        self.buffered += 1;
        std::str::from_utf8(&self.buf[start..end]).expect("serde_json writes UTF-8")
    }

    /// Writes the waiting lines. Those that cannot be written are counted in `failed` and
    /// dropped: holding them for later would hold the monitor's memory hostage to the disk.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let res = self.out.write_all(&self.buf).and_then(|_| self.out.flush());
        let lines = std::mem::take(&mut self.buffered);
        self.buf.clear();
        match res {
            Ok(()) if self.failed > 0 => {
                log::warn!(
                    "the event log is writable again after {} lost lines",
                    self.failed
                );
                self.failed = 0;
            }
            Ok(()) => {}
            Err(e) => {
                if self.failed == 0 {
                    let target = self
                        .path
                        .as_ref()
                        .map_or("stdout".into(), |p| p.display().to_string());
                    log::error!("cannot write to the event log '{target}': {e}; events are lost until it is writable");
                }
                self.failed += lines;
            }
        }
    }
}

/// A pipe on standard output (`ebpfh --log - | consumer`) is made large enough for one flush
/// of buffered lines: with the default 64 KiB, writing a storm's megabyte takes sixteen rounds
/// of the monitor waiting for the reader to make room. Best effort: a pipe that cannot be
/// widened (an unprivileged monitor past `/proc/sys/fs/pipe-max-size`) works as it is.
fn widen_pipe(out: &impl std::os::fd::AsFd) {
    let is_pipe = nix::sys::stat::fstat(out.as_fd())
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO);
    if is_pipe {
        if let Err(e) = fcntl(out, FcntlArg::F_SETPIPE_SZ(FLUSH_BYTES as libc::c_int)) {
            log::debug!("the event log pipe keeps its size: {e}");
        }
    }
}

/// Lines still waiting are written when the sink goes (the monitor's last lines).
impl Drop for Sink {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn process() -> Process {
        Process {
            pid: 1417900,
            tid: 1417900,
            ppid: 1417850,
            uid: 1000,
            comm: "anomaly".into(),
            exe: "/home/u/anomaly".into(),
            cgroup: None,
            container_id: None,
        }
    }

    #[test]
    fn anomaly_line_has_the_design_schema() {
        let rec = Record::Anomaly {
            process: process(),
            profile: ProfileRef::new(ProfileKey::from_stat(66307, 32381778), State::Normal),
            syscall: Syscall {
                nr: 1,
                name: "write".into(),
            },
            misses: 5,
            new_pairs: 1,
            unknown_call: false,
            sequence: [
                "fstat", "brk", "brk", "write", "write", "write", "write", "write", "write",
            ]
            .map(Name::from)
            .to_vec(),
            lfc: 1,
            profile_anomalies: 1,
        };
        let t = DateTime::from_timestamp_nanos(1_795_468_037_123_456_789);
        let line = to_line(t, "web1", &rec);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-11-23T21:07:17.123456789Z");
        assert_eq!(v["event"], "anomaly");
        assert_eq!(v["host"], "web1");
        assert_eq!(v["pid"], 1417900);
        assert_eq!(v["ppid"], 1417850);
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["comm"], "anomaly");
        assert_eq!(v["exe"], "/home/u/anomaly");
        assert_eq!(v["profile"], "66307:32381778");
        assert_eq!(v["profile_state"], "normal");
        assert_eq!(v["syscall"]["nr"], 1);
        assert_eq!(v["syscall"]["name"], "write");
        assert_eq!(v["misses"], 5);
        assert_eq!(v["sequence"].as_array().unwrap().len(), 9);
        assert_eq!(v["sequence"][0], "fstat");
        assert_eq!(v["lfc"], 1);
        assert_eq!(v["profile_anomalies"], 1);
        // time leads the line so sorted logs read in order; then event and host.
        assert!(line.starts_with("{\"time\":\"2026-11-23T21:07:17.123456789Z\",\"event\":\"anomaly\",\"host\":\"web1\",\"pid\""), "{line}");
    }

    #[test]
    fn lifecycle_lines_carry_their_fields() {
        let t = DateTime::from_timestamp_nanos(0);
        let rec = Record::MonitorStopped {
            pid: 5,
            reason: "SIGTERM".into(),
            profiles_saved: 3,
            profiles_failed: 2,
        };
        let v: Value = serde_json::from_str(&to_line(t, "h", &rec)).unwrap();
        assert_eq!(v["event"], "monitor_stopped");
        assert_eq!(v["reason"], "SIGTERM");
        assert_eq!(v["profiles_saved"], 3);
        assert_eq!(v["profiles_failed"], 2);
        let rec = Record::NormalStopped {
            process: process(),
            profile: ProfileRef::new(ProfileKey::default(), State::Training),
            reason: "anomaly_limit".into(),
            profile_anomalies: 31,
        };
        let v: Value = serde_json::from_str(&to_line(t, "h", &rec)).unwrap();
        assert_eq!(v["event"], "normal_stopped");
        assert_eq!(v["profile_state"], "training");
        assert_eq!(v["reason"], "anomaly_limit");
    }

    /// One record of every kind.
    fn every_kind() -> Vec<Record> {
        let profile = || ProfileRef::new(ProfileKey::from_stat(66307, 32381778), State::Frozen);
        vec![
            Record::Anomaly {
                process: process(),
                profile: profile(),
                syscall: Syscall {
                    nr: 1,
                    name: "write".into(),
                },
                misses: 2,
                new_pairs: 2,
                unknown_call: true,
                sequence: vec!["EMPTY".into(), "write".into()],
                lfc: 1,
                profile_anomalies: 4,
            },
            Record::ProfileCreated {
                process: process(),
                profile: profile(),
                sha256: Some(crate::identity::Digest::of(b"ls")),
            },
            Record::ProfileCreated {
                process: process(),
                profile: profile(),
                sha256: None,
            },
            Record::NormalStarted {
                process: process(),
                profile: profile(),
                train_count: 10,
                last_mod_count: 5,
                sequences: 3,
            },
            Record::NormalStopped {
                process: process(),
                profile: profile(),
                reason: "command".into(),
                profile_anomalies: 3,
            },
            Record::TolerizeLimit {
                process: process(),
                profile: profile(),
                lfc: 13,
            },
            Record::NewSequence {
                process: process(),
                profile: profile(),
                sequence: vec!["read".into()],
            },
            Record::Delay {
                process: process(),
                profile: profile(),
                lfc: 2,
                delay_ms: 4,
            },
            Record::ExecveDenied {
                process: process(),
                profile: profile(),
                lfc: 11,
                filename: "/bin/sh".into(),
                killed: true,
            },
            Record::Resumed {
                pid: 3,
                stopped_ms: 8,
                reason: "delay_over".into(),
                resumed: true,
            },
            Record::EventsLost {
                lost: [("anomaly".to_string(), 2)].into(),
                failed: Default::default(),
            },
            Record::Command {
                peer_uid: 0,
                peer_pid: 9,
                command: "normalize".into(),
                target: Some("profile ls".into()),
                profile: Some("1:2".into()),
                exe: Some("/usr/bin/ls".into()),
                profile_state: Some(State::Normal),
                setting: None,
                value: None,
                result: "ok".into(),
                error: None,
            },
            Record::MonitorStarted {
                version: "0.1.0".into(),
                pid: 5,
                responses: vec!["delay".into()],
                profiles_loaded: 1,
                profiles_set_aside: 0,
                state_dir: "/var/lib/ebpfh".into(),
            },
            Record::MonitorStopped {
                pid: 5,
                reason: "SIGTERM".into(),
                profiles_saved: 1,
                profiles_failed: 0,
            },
        ]
    }

    /// The line as a JSON object built field by field: what [`append_line`] must write.
    fn line_via_value(time: DateTime<Utc>, host: &str, record: &Record) -> String {
        let Value::Object(fields) = serde_json::to_value(record).unwrap() else {
            panic!("a tagged enum serialises to an object")
        };
        let mut line = serde_json::Map::new();
        line.insert("time".into(), rfc3339(time).into());
        let mut fields = fields.into_iter();
        let (k, v) = fields.next().unwrap();
        assert_eq!(k, "event");
        line.insert(k, v);
        line.insert("host".into(), host.into());
        line.extend(fields);
        Value::Object(line).to_string()
    }

    #[test]
    fn lines_are_time_event_host_then_the_records_fields() {
        let t = DateTime::from_timestamp_nanos(1_795_468_037_000_000_001);
        let mut buf = b"before\n".to_vec();
        for rec in every_kind() {
            for host in ["web1", "", "a \"quoted\" \\ host\n"] {
                let line = to_line(t, host, &rec);
                assert_eq!(line, line_via_value(t, host, &rec));
                let at = buf.len();
                append_line(&mut buf, t, host, &rec);
                assert_eq!(&buf[at..], line.as_bytes());
            }
        }
        assert!(buf.starts_with(b"before\n{\"time\""));
    }

    #[test]
    fn anomaly_lines_are_serdes_byte_for_byte() {
        let t = DateTime::from_timestamp_nanos(1_795_468_037_000_000_001);
        let odd = "a \"quoted\" \\ name\n\u{1}\u{7f} é ✓";
        let mut lines = 0;
        for (cgroup, container, script) in [
            (None, None, None),
            (Some("/system.slice/x.service"), None, Some("/usr/lib/s.py")),
            (Some(odd), Some("0123abcd"), Some(odd)),
            (None, Some(""), Some("")),
        ] {
            for (comm, exe, unknown_call, sequence) in [
                ("anomaly", "/home/u/anomaly", false, vec!["EMPTY", "write"]),
                (odd, odd, true, vec![]),
                ("", "", false, vec!["write"]),
            ] {
                let mut p = process();
                p.comm = comm.into();
                p.exe = exe.into();
                p.cgroup = cgroup.map(Into::into);
                p.container_id = container.map(Into::into);
                let profile = ProfileRef {
                    profile: ProfileKey::from_stat(66307, 32381778).to_string(),
                    profile_state: State::Normal,
                    script: script.map(Into::into),
                };
                let rec = Record::Anomaly {
                    process: p,
                    profile,
                    syscall: Syscall {
                        nr: u16::MAX,
                        name: odd.into(),
                    },
                    misses: u16::MAX,
                    new_pairs: 0,
                    unknown_call,
                    sequence: sequence.into_iter().map(Name::from).collect(),
                    lfc: u32::MAX,
                    profile_anomalies: u64::MAX,
                };
                for host in ["web1", "", odd] {
                    let mut fast = Vec::new();
                    append_line(&mut fast, t, host, &rec);
                    let mut serde = Vec::new();
                    append_line(&mut serde, t, host, &rec);
                    let time_end = serde.iter().position(|&b| b == b',').unwrap() + 1;
                    serde.truncate(time_end);
                    append_serde(&mut serde, host, &rec);
                    assert_eq!(
                        String::from_utf8(fast).unwrap(),
                        String::from_utf8(serde).unwrap()
                    );
                    lines += 1;
                }
            }
        }
        assert_eq!(lines, 36);
    }

    #[test]
    fn every_line_reads_back_as_its_record() {
        let t = DateTime::from_timestamp_nanos(1_795_468_037_123_456_789);
        for rec in every_kind() {
            let text = to_line(t, "web1", &rec);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["event"], rec.kind(), "{text}");
            let line = Line::parse(&text).unwrap_or_else(|| panic!("unreadable: {text}"));
            assert_eq!(line.time, "2026-11-23T21:07:17.123456789Z");
            assert_eq!(line.host, "web1");
            assert_eq!(line.record, rec);
        }
        assert_eq!(
            Line::parse(r#"{"time":"t","host":"h","event":"future_kind"}"#),
            None
        );
        assert_eq!(Line::parse("not json"), None);
    }

    #[test]
    fn events_map_to_their_lines() {
        use crate::event::{Counters, StopReason};
        let key = ProfileKey::from_stat(66307, 32381778);
        let name = |s: u16| Name::from(format!("s{s}"));
        let line = |e: &Event| {
            let cx = Context {
                process: process(),
                profile: ProfileRef::new(key, State::Normal),
                sha256: None,
            };
            let r = Record::from_event(e, cx, name);
            serde_json::from_str::<Value>(&to_line(DateTime::from_timestamp_nanos(0), "h", &r))
                .unwrap()
        };
        let v = line(&Event::Anomaly {
            tid: 1,
            key,
            window: [511, 511, 511, 511, 511, 511, 0, 1, 2],
            misses: 3,
            new_pairs: 1,
            unknown: false,
            lfc: 4,
            profile_anomalies: 5,
            task_count: 6,
        });
        assert_eq!(v["event"], "anomaly");
        assert_eq!(v["syscall"]["nr"], 2);
        assert_eq!(v["syscall"]["name"], "s2");
        assert_eq!(v["sequence"][0], "s511");
        assert_eq!(v["sequence"][8], "s2");
        assert_eq!(
            (v["misses"].as_u64(), v["lfc"].as_u64()),
            (Some(3), Some(4))
        );
        assert_eq!(
            (&v["new_pairs"], &v["unknown_call"]),
            (&1.into(), &false.into())
        );
        assert_eq!(v["profile_anomalies"], 5);
        assert_eq!(v["pid"], 1417900);
        assert_eq!(v["profile"], "66307:32381778");
        let counters = Counters {
            count: 100,
            train_count: 90,
            last_mod_count: 40,
            sequences: 12,
            anomalies: 31,
        };
        let v = line(&Event::NormalStarted {
            tid: 1,
            key,
            lfc: 0,
            before: counters,
        });
        assert_eq!(
            (&v["train_count"], &v["last_mod_count"], &v["sequences"]),
            (&Value::from(90), &Value::from(40), &Value::from(12))
        );
        let v = line(&Event::NormalStopped {
            tid: 1,
            key,
            lfc: 0,
            counters,
            reason: StopReason::AnomalyLimit,
        });
        assert_eq!(v["reason"], "anomaly_limit");
        assert_eq!(v["profile_anomalies"], 31);
        let v = line(&Event::ExecveDenied {
            tid: 1,
            key,
            lfc: 11,
            killed: false,
            filename: "/bin/sh".into(),
        });
        assert_eq!(v["event"], "execve_denied");
        assert_eq!(v["filename"], "/bin/sh");
        assert_eq!(v["killed"], false);
        let v = line(&Event::Delay {
            tid: 1,
            key,
            delay_ms: 16,
            lfc: 4,
        });
        assert_eq!(
            (&v["delay_ms"], &v["lfc"]),
            (&Value::from(16), &Value::from(4))
        );
        let digest = crate::identity::Digest::of(b"ls");
        let cx = Context {
            process: process(),
            profile: ProfileRef::new(key, State::Training),
            sha256: Some(digest),
        };
        let r = Record::from_event(&Event::ProfileCreated { tid: 1, key }, cx, name);
        let v: Value =
            serde_json::from_str(&to_line(DateTime::from_timestamp_nanos(0), "h", &r)).unwrap();
        assert_eq!(v["event"], "profile_created");
        assert_eq!(v["sha256"], digest.to_string());
    }

    #[test]
    fn kernel_kind_names_are_the_lines_event_names() {
        // Every kernel kind decodes to an Event whose line carries the name `events_lost`
        // counts it under.
        use crate::bpf::types;
        use crate::event::{decode, KIND_NAMES};
        for (k, name) in KIND_NAMES.iter().enumerate().skip(1) {
            let mut rec = types::ev_execve_denied::default();
            rec.h.kind = k as u32;
            // SAFETY: plain C record.
            let bytes = unsafe { plain::as_bytes(&rec) };
            let mut buf = bytes.to_vec();
            // Room for the largest record (profile_created, with its paths).
            buf.resize(std::mem::size_of::<types::ev_profile_created>(), 0);
            let (e, _) = decode(&buf, |_| ProfileKey::default()).unwrap();
            let cx = Context {
                process: process(),
                profile: ProfileRef::new(ProfileKey::default(), State::Training),
                sha256: None,
            };
            let r = Record::from_event(&e, cx, |s| s.to_string().into());
            assert_eq!(r.kind(), *name, "kind {k}");
        }
    }

    #[test]
    fn sink_returns_each_line_it_writes_in_order_past_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut sink = Sink::open(path.to_str().unwrap(), "h".into()).unwrap();
        let t = DateTime::from_timestamp_nanos(0);
        // More than FLUSH_BYTES of lines, so that some writes flush the ones before them.
        let mut returned = Vec::new();
        for i in 0..20_000 {
            let rec = Record::MonitorStopped {
                pid: i,
                reason: "x".repeat(64),
                profiles_saved: 0,
                profiles_failed: 0,
            };
            returned.push(sink.write(t, &rec).to_string());
        }
        assert!(returned.iter().map(|l| l.len() + 1).sum::<usize>() > FLUSH_BYTES);
        sink.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let written: Vec<&str> = text.lines().collect();
        assert_eq!(written, returned);
        for (i, l) in written.iter().enumerate() {
            let line = Line::parse(l).expect("a whole line");
            assert!(matches!(line.record, Record::MonitorStopped { pid, .. } if pid == i as u32));
        }
    }

    #[test]
    fn a_pipe_for_the_log_is_widened_to_one_flush() {
        let (_read, write) = nix::unistd::pipe().unwrap();
        widen_pipe(&write);
        let size = fcntl(&write, FcntlArg::F_GETPIPE_SZ).unwrap();
        assert_eq!(size as usize, FLUSH_BYTES);
        // Not a pipe: left alone.
        let file = tempfile::tempfile().unwrap();
        widen_pipe(&file);
        assert!(fcntl(&file, FcntlArg::F_GETPIPE_SZ).is_err());
    }

    #[test]
    fn sink_appends_lines_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut sink = Sink::open(path.to_str().unwrap(), "h".into()).unwrap();
        let rec = Record::MonitorStopped {
            pid: 1,
            reason: "test".into(),
            profiles_saved: 0,
            profiles_failed: 0,
        };
        let t = DateTime::from_timestamp_nanos(0);
        sink.write(t, &rec);
        std::fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
        sink.reopen().unwrap();
        sink.write(t, &rec);
        sink.write(t, &rec);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "",
            "written before a flush"
        );
        sink.flush();
        let old = std::fs::read_to_string(dir.path().join("events.jsonl.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1);
        assert_eq!(new.lines().count(), 2);
        for l in new.lines() {
            serde_json::from_str::<Value>(l).unwrap();
        }
    }
}
