//! The monitor's side of the control socket.
//!
//! A listener thread accepts connections and gives each its own thread, which reads one request
//! and forwards it, with a channel for the reply, to the monitor thread (the kernel object is not
//! `Send`, so only the monitor thread touches it). The monitor calls [`Server::service`] from its
//! loop, which wakes at least every 200 ms. Event-stream subscribers get a bounded channel fed
//! with `try_send`; one that falls behind is dropped with a warning, so the monitor never waits.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::protocol::*;
use crate::bpf::{Kernel, TaskInfo};
use crate::jsonl::Record;
use crate::profile::{Profile, ProfileKey, State, Table};
use crate::settings::Settings;
use crate::syscalls;

/// The socket's file name inside the run directory.
pub const SOCKET: &str = "control.sock";
/// The monitor's pid file inside the run directory.
pub const PIDFILE: &str = "ebpfh.pid";
/// Requests waiting for the monitor thread; more are refused as "busy".
const QUEUE: usize = 64;
/// Events a subscriber may have unread before it is dropped.
const SUBSCRIBER_QUEUE: usize = 1024;
/// Anomaly lines kept for subscribers that connect later.
const BACKLOG: usize = 200;
/// How many of the latest incidents `ebpfh status` shows.
const RECENT_INCIDENTS: usize = 5;

fn incident_summary(rec: &Record) -> Option<IncidentSummary> {
    if crate::incident::is_quiet(rec) {
        return None;
    }
    let Record::Incident {
        process,
        profile,
        last,
        reason,
        anomalous_calls,
        max_lfc,
        syscalls,
        ..
    } = rec
    else {
        return None;
    };
    // The most frequent anomalous calls first.
    let mut calls: Vec<(&crate::jsonl::Name, &u64)> = syscalls.iter().collect();
    calls.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    Some(IncidentSummary {
        last: last.clone(),
        pid: process.pid,
        tid: process.tid,
        exe: process.exe.clone(),
        profile: profile.profile.clone(),
        reason: reason.clone(),
        anomalous_calls: *anomalous_calls,
        max_lfc: *max_lfc,
        syscalls: calls.into_iter().map(|(n, _)| n.to_string()).collect(),
    })
}
/// One sample per second for ten minutes.
const HISTORY: usize = 600;
/// A request line longer than this is refused.
const MAX_REQUEST: u64 = 64 << 10;

/// Who is on the other end of a connection (SO_PEERCRED).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

enum Incoming {
    Request {
        req: Request,
        peer: Peer,
        reply: mpsc::Sender<Reply>,
    },
    Subscribe {
        events: SyncSender<Arc<str>>,
    },
}

/// What the monitor lends the control server while it answers a request.
/// What `status` says about responses, from the settings and what the kernel loaded.
fn responses(settings: &Settings, execve_abort_loaded: bool) -> Vec<String> {
    let mut out = Vec::new();
    if settings.delay_factor_ms > 0 {
        out.push("delay".to_string());
    }
    match (settings.abort_execve > 0, execve_abort_loaded) {
        (true, true) => out.push("execve_abort".to_string()),
        (true, false) => out.push("execve_abort unavailable (no BPF LSM)".to_string()),
        _ => {}
    }
    out
}

pub trait Host {
    fn kernel(&self) -> &Kernel<'_>;
    /// The executable's path for a profile slot, as far as the monitor knows it.
    fn exe(&self, slot: u32) -> String;
    /// The content identity of a slot's executable, once the monitor has hashed it.
    fn identity(&self, slot: u32) -> Option<crate::identity::Identity>;
    /// The path of a cgroup v2 id (see `cgroup::Cgroups`).
    fn cgroup_path(&self, _id: u64) -> Option<String> {
        None
    }
    /// A script profile's script (empty for other profiles).
    fn script(&self, slot: u32) -> String;
    /// Every slot whose path the monitor knows: a script profile's script, others' executable.
    fn known_exes(&self) -> Vec<(u32, String)>;
    fn settings(&self) -> &Settings;
    /// Applies new settings to the kernel and remembers them.
    fn set_settings(&mut self, settings: Settings) -> Result<(), String>;
    /// Saves every profile; returns how many are on disk, or one sentence about those that
    /// could not be written.
    fn save(&mut self) -> Result<usize, String>;
    /// Writes one profile's file now (atomically), so a command survives a crash right after it.
    fn persist(&mut self, slot: u32) -> Result<(), String>;
    /// Records a changed setting in the state directory, to apply again after a restart.
    fn persist_setting(&mut self, setting: &str, value: &str) -> Result<(), String>;
    /// Writes an event line (log and subscribers).
    fn emit(&mut self, rec: &Record);
    fn hub(&mut self) -> &mut Hub;
    /// A bundle of the profiles in `slots`, and those left out for want of an identity.
    fn export(&mut self, slots: &[u32]) -> (crate::bundle::Body, Vec<String>);
    /// Imports bundles into the running kernel (see `src/fleet.rs`).
    fn import(
        &mut self,
        bodies: &[crate::bundle::Body],
        how: crate::bundle::ImportAs,
    ) -> Result<Vec<crate::fleet::Outcome>, String>;
    fn state_dir(&self) -> String;
    fn log_target(&self) -> Option<String>;
    /// What waits to be hashed (none for a host that hashes nothing).
    fn hashing(&self) -> crate::control::protocol::Hashing {
        Default::default()
    }
}

/// Event-stream subscribers and the recent anomalies; owned by the monitor, fed by `emit`.
#[derive(Default)]
pub struct Hub {
    subscribers: Vec<SyncSender<Arc<str>>>,
    backlog: VecDeque<Arc<str>>,
    /// Anomalous calls since the start, with or without their own line (the monitor counts
    /// them, see `count_anomaly`).
    pub anomalies: u64,
    /// Incidents that were alarms since the start.
    pub incidents: u64,
    /// Incidents that were not (counted whether or not their line is written).
    pub quiet_incidents: u64,
    /// The latest incidents, oldest first.
    pub recent_incidents: VecDeque<IncidentSummary>,
    /// Subscribers dropped because they read too slowly.
    pub dropped: u64,
}

impl Hub {
    /// Whether a line built now would reach anyone (anomalies and incidents are always kept
    /// for the backlog).
    pub fn wants(&self, rec: &Record) -> bool {
        !self.subscribers.is_empty() || Self::kept(rec)
    }

    fn kept(rec: &Record) -> bool {
        matches!(rec, Record::Anomaly { .. } | Record::Incident { .. })
    }

    /// One anomalous call, whether or not its line is written.
    pub fn count_anomaly(&mut self) {
        self.anomalies += 1;
    }

    /// One incident that was not an alarm, whether or not its line is written.
    pub fn count_quiet(&mut self) {
        self.quiet_incidents += 1;
    }

    /// Hands one JSON line to every subscriber without waiting for any of them.
    pub fn publish(&mut self, rec: &Record, line: Arc<str>) {
        if Self::kept(rec) {
            if self.backlog.len() == BACKLOG {
                self.backlog.pop_front();
            }
            self.backlog.push_back(line.clone());
        }
        if let Some(summary) = incident_summary(rec) {
            self.incidents += 1;
            if self.recent_incidents.len() == RECENT_INCIDENTS {
                self.recent_incidents.pop_front();
            }
            self.recent_incidents.push_back(summary);
        }
        let mut dropped = 0;
        self.subscribers
            .retain(|tx| match tx.try_send(line.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    dropped += 1;
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
        if dropped > 0 {
            log::warn!("dropped {dropped} event-stream client(s) that read too slowly");
            self.dropped += dropped;
        }
    }

    fn subscribe(&mut self, tx: SyncSender<Arc<str>>) {
        for line in &self.backlog {
            if tx.try_send(line.clone()).is_err() {
                return;
            }
        }
        self.subscribers.push(tx);
    }
}

/// Per-second rates, computed from the profiles' call counters between samples.
struct Rates {
    last: Option<Instant>,
    counts: Vec<u64>,
    per_slot: Vec<f64>,
    anomalies: u64,
    history: VecDeque<Sample>,
}

impl Rates {
    fn sample(&mut self, kernel: &Kernel<'_>, anomalies: u64) {
        let now = Instant::now();
        let secs = self
            .last
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let slots = kernel.slots();
        let n = slots.end as usize;
        self.counts.resize(n, 0);
        self.per_slot.resize(n, 0.0);
        let mut calls = 0u64;
        for slot in slots {
            let i = slot as usize;
            let count = kernel.profile_counters(slot).map_or(0, |p| p.count);
            // A reset sets the counter back to 0: count what came after it.
            let d = count.checked_sub(self.counts[i]).unwrap_or(count);
            self.counts[i] = count;
            calls += d;
            self.per_slot[i] = if secs > 0.0 { d as f64 / secs } else { 0.0 };
        }
        let new_anomalies = anomalies.saturating_sub(self.anomalies);
        self.anomalies = anomalies;
        if secs > 0.0 {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(Sample {
                calls_per_sec: calls as f64 / secs,
                anomalies_per_sec: new_anomalies as f64 / secs,
            });
        }
        self.last = Some(now);
    }

    fn slot(&self, slot: u32) -> f64 {
        self.per_slot.get(slot as usize).copied().unwrap_or(0.0)
    }
}

pub struct Server {
    rx: Receiver<Incoming>,
    path: PathBuf,
    pidfile: PathBuf,
    stop: Arc<AtomicBool>,
    started: Instant,
    rates: Rates,
    /// Pair counts by slot, recomputed only when (sequences, state) change.
    pairs: HashMap<u32, (u64, u32, u64)>,
}

pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET)
}

impl Server {
    /// Creates the run directory (0700), the socket (0600) and the pid file, and starts
    /// accepting connections.
    pub fn start(run_dir: &Path) -> Result<Server> {
        crate::safedir::prepare(run_dir, "run directory")?;
        std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict '{}' to root", run_dir.display()))?;
        let path = socket_path(run_dir);
        let pidfile = run_dir.join(PIDFILE);
        if UnixStream::connect(&path).is_ok() {
            let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
            anyhow::bail!(
                "another ebpfh monitor (pid {}) already serves '{}'; stop it, or give this one its own --run-dir",
                pid.trim(),
                path.display()
            );
        }
        // A socket nobody answers on is left over from a monitor that died.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot create the control socket '{}'", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict '{}' to root", path.display()))?;
        write_pidfile(&pidfile)
            .with_context(|| format!("cannot write the pid file '{}'", pidfile.display()))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(listener, tx, flag))
            .context("cannot start the control socket's thread")?;
        Ok(Server {
            rx,
            path,
            pidfile,
            stop,
            started: Instant::now(),
            rates: Rates {
                last: None,
                counts: Vec::new(),
                per_slot: Vec::new(),
                anomalies: 0,
                history: VecDeque::with_capacity(HISTORY),
            },
            pairs: HashMap::new(),
        })
    }

    /// Answers every waiting request and takes the per-second sample when one is due.
    /// Called from the monitor loop; never blocks.
    pub fn service(&mut self, host: &mut dyn Host) {
        if self
            .rates
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            let anomalies = host.hub().anomalies;
            self.rates.sample(host.kernel(), anomalies);
        }
        loop {
            match self.rx.try_recv() {
                Ok(Incoming::Request { req, peer, reply }) => {
                    let answer = self.answer(host, req, peer);
                    // The client may have gone; nothing to do about it.
                    let _ = reply.send(answer);
                }
                Ok(Incoming::Subscribe { events }) => host.hub().subscribe(events),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
    }

    fn answer(&mut self, host: &mut dyn Host, req: Request, peer: Peer) -> Reply {
        match req {
            Request::Status => {
                let tasks = host.kernel().tasks().map_err(|e| e.to_string())?;
                let rows = self.rows(host, &tasks);
                Ok(Response::Status(self.status(host, &rows, &tasks)))
            }
            Request::Processes { threads } => {
                let tasks = host.kernel().tasks().map_err(|e| e.to_string())?;
                Ok(Response::Processes(processes(host, &tasks, threads)))
            }
            Request::Profiles => {
                let tasks = host.kernel().tasks().map_err(|e| e.to_string())?;
                Ok(Response::Profiles(self.rows(host, &tasks)))
            }
            Request::Snapshot { threads } => {
                let tasks = host.kernel().tasks().map_err(|e| e.to_string())?;
                let profiles = self.rows(host, &tasks);
                let status = self.status(host, &profiles, &tasks);
                Ok(Response::Snapshot(Box::new(Snapshot {
                    status,
                    processes: processes(host, &tasks, threads),
                    profiles,
                })))
            }
            Request::Profile { target } => {
                let slot = resolve(host, &target)?;
                let profile = host
                    .kernel()
                    .profile(slot)
                    .ok_or_else(|| format!("the {target} is gone"))?;
                let tasks = host.kernel().tasks().map_err(|e| e.to_string())?;
                let row = self.row(host, slot, &profile, &tasks);
                let normal_at = (profile.state() == State::Frozen).then(|| {
                    crate::clock::rfc3339(crate::clock::TaiClock::new().to_utc(profile.normal_time))
                });
                Ok(Response::Profile(ProfileDetail {
                    row,
                    normal_at,
                    train: pairs(&profile.train),
                    test: pairs(&profile.test),
                }))
            }
            Request::Command { op, target } => self.command(host, peer, op, target),
            Request::Set { setting, value } => {
                let mut s = host.settings().clone();
                let result = apply_setting(&mut s, &setting, &value)
                    .and_then(|()| host.set_settings(s))
                    .and_then(|()| {
                        host.persist_setting(&setting, &value).map_err(|e| {
                            format!("{setting} is {value} now, but only until the monitor restarts: {e}")
                        })
                    });
                host.emit(&Record::Command {
                    peer_uid: peer.uid,
                    peer_pid: peer.pid,
                    command: "set".into(),
                    target: None,
                    profile: None,
                    exe: None,
                    profile_state: None,
                    setting: Some(setting.clone()),
                    value: Some(value.clone()),
                    result: if result.is_ok() { "ok" } else { "failed" }.into(),
                    error: result.as_ref().err().cloned(),
                });
                result?;
                log::info!(
                    "set {setting} = {value} (asked by uid {} pid {})",
                    peer.uid,
                    peer.pid
                );
                Ok(Response::Settings(SettingsView::from(host.settings())))
            }
            Request::Save => {
                let result = host.save();
                host.emit(&Record::Command {
                    peer_uid: peer.uid,
                    peer_pid: peer.pid,
                    command: "save".into(),
                    target: None,
                    profile: None,
                    exe: None,
                    profile_state: None,
                    setting: None,
                    value: None,
                    result: if result.is_ok() { "ok" } else { "failed" }.into(),
                    error: result.as_ref().err().cloned(),
                });
                Ok(Response::Saved { profiles: result? })
            }
            Request::Export { targets } => {
                let slots = if targets.is_empty() {
                    host.kernel()
                        .slots()
                        .filter(|&s| host.kernel().profile_counters(s).is_some())
                        .collect()
                } else {
                    let mut slots = targets
                        .iter()
                        .map(|t| resolve(host, &Target::Profile(t.clone())))
                        .collect::<Result<Vec<u32>, String>>()?;
                    slots.sort_unstable();
                    slots.dedup();
                    slots
                };
                let (body, skipped) = host.export(&slots);
                let bundle = String::from_utf8(body.encode()).expect("bundles are JSON");
                Ok(Response::Bundle { bundle, skipped })
            }
            Request::Import {
                bundles,
                names,
                how,
            } => {
                let bodies = bundles
                    .iter()
                    .enumerate()
                    .map(|(i, text)| {
                        crate::bundle::Body::decode(text.as_bytes()).map_err(|e| {
                            let name = names.get(i).map_or("?", |n| n.as_str());
                            format!("the bundle '{name}' {e}")
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let result = host.import(&bodies, how);
                host.emit(&Record::Command {
                    peer_uid: peer.uid,
                    peer_pid: peer.pid,
                    command: "import".into(),
                    target: Some(names.join(" ")),
                    profile: None,
                    exe: None,
                    profile_state: None,
                    setting: None,
                    value: None,
                    result: if result.is_ok() { "ok" } else { "failed" }.into(),
                    error: result.as_ref().err().cloned(),
                });
                Ok(Response::Imported(result?))
            }
            Request::EventStream => Err("the event stream is served by the socket thread".into()),
            Request::ReturnError => Err("you asked for an error".into()),
        }
    }

    fn command(&mut self, host: &mut dyn Host, peer: Peer, op: Op, target: Target) -> Reply {
        let slot = resolve(host, &target);
        let exe = slot.as_ref().ok().map(|&s| host.exe(s));
        let name = exe
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "the profile".into());
        let result = slot.clone().and_then(|slot| {
            host.kernel()
                .command(slot, op.kernel())
                .map_err(|e| format!("cannot {} {name}: {e}", op.as_str()))?;
            // On disk before the reply: a crash right after the command must not undo it.
            host.persist(slot).map_err(|e| {
                format!(
                    "{} {name} took effect, but only until the monitor stops: {e}",
                    op.as_str()
                )
            })
        });
        let after = slot
            .as_ref()
            .ok()
            .and_then(|&s| host.kernel().profile_counters(s));
        host.emit(&Record::Command {
            peer_uid: peer.uid,
            peer_pid: peer.pid,
            command: op.as_str().into(),
            target: Some(target.to_string()),
            profile: after.as_ref().map(|p| p.key.to_string()),
            exe: exe.clone(),
            profile_state: after.as_ref().map(|p| p.state()),
            setting: None,
            value: None,
            result: if result.is_ok() { "ok" } else { "failed" }.into(),
            error: result.as_ref().err().cloned(),
        });
        result?;
        let slot = slot?;
        log::info!(
            "{} {} (asked by uid {} pid {})",
            op.as_str(),
            exe.as_deref().unwrap_or(""),
            peer.uid,
            peer.pid
        );
        let profile = after.ok_or("the profile is gone")?;
        let tasks = host.kernel().tasks().map_err(|e| e.to_string())?;
        let row = self.row(host, slot, &profile, &tasks);
        Ok(Response::Done { op, profile: row })
    }

    fn status(&self, host: &mut dyn Host, rows: &[ProfileRow], tasks: &[TaskInfo]) -> Status {
        let kernel = host.kernel();
        let st = kernel.stats();
        let mut counts = StateCounts::default();
        for r in rows {
            counts.add(r.state);
        }
        let settings = host.settings().clone();
        let last = self.rates.history.back().copied().unwrap_or_default();
        let dropped = host.hub().dropped;
        let anomalies = host.hub().anomalies;
        let incidents = host.hub().incidents;
        let quiet_incidents = host.hub().quiet_incidents;
        let recent_incidents = host.hub().recent_incidents.iter().cloned().collect();
        let mut processes: Vec<u32> = tasks.iter().map(|t| t.pid).collect();
        processes.sort_unstable();
        processes.dedup();
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            monitoring: settings.monitoring,
            state_dir: host.state_dir(),
            log: host.log_target(),
            profiles: counts,
            processes: processes.len(),
            threads: tasks.len(),
            calls_per_sec: last.calls_per_sec,
            anomalies_per_sec: last.anomalies_per_sec,
            anomalies,
            incidents,
            quiet_incidents,
            recent_incidents,
            losses: Losses {
                events: st.total_lost(),
                rows_full: st.rows_full,
                profiles_full: st.profiles_full,
                quota_refused: st.quota_refused,
                tasks_failed: st.tasks_failed,
                subscribers_dropped: dropped,
            },
            profiles_used: st.profiles_used,
            profiles_max: host.kernel().capacity().slots(),
            rows_used: st.rows_used,
            rows_max: host.kernel().capacity().rows.saturating_sub(1),
            responses: responses(&settings, host.kernel().execve_abort()),
            settings: SettingsView::from(&settings),
            history: self.rates.history.iter().copied().collect(),
            hashing: host.hashing(),
        }
    }

    /// Every profile's row (counters only; pair counts come from a cache).
    fn rows(&mut self, host: &mut dyn Host, tasks: &[TaskInfo]) -> Vec<ProfileRow> {
        let mut by_slot: HashMap<u32, usize> = HashMap::new();
        for t in tasks.iter().filter(|t| t.tid == t.pid) {
            *by_slot.entry(t.slot).or_default() += 1;
        }
        let mut out = Vec::new();
        for slot in host.kernel().slots() {
            let Some(p) = host.kernel().profile_counters(slot) else {
                continue;
            };
            let pairs = match self.pairs.get(&slot) {
                Some(&(seq, state, n)) if seq == p.sequences && state == p.state => n,
                _ => {
                    let n = host
                        .kernel()
                        .profile(slot)
                        .map_or(0, |full| active(&full).pairs());
                    self.pairs.insert(slot, (p.sequences, p.state, n));
                    n
                }
            };
            let mut row = self.row_from(host, slot, &p, pairs);
            row.processes = by_slot.get(&slot).copied().unwrap_or(0);
            out.push(row);
        }
        out
    }

    fn row(&self, host: &dyn Host, slot: u32, p: &Profile, tasks: &[TaskInfo]) -> ProfileRow {
        let pairs = if p.train.rows.is_empty() && p.test.rows.is_empty() {
            self.pairs.get(&slot).map_or(0, |&(_, _, n)| n)
        } else {
            active(p).pairs()
        };
        let mut row = self.row_from(host, slot, p, pairs);
        row.processes = tasks
            .iter()
            .filter(|t| t.tid == t.pid && t.slot == slot)
            .count();
        row
    }

    fn row_from(&self, host: &dyn Host, slot: u32, p: &Profile, pairs: u64) -> ProfileRow {
        let state = p.state();
        let normal_in_secs = (state == State::Frozen)
            .then(|| p.normal_time.saturating_sub(crate::clock::tai_now()) / 1_000_000_000);
        let identity = host.identity(slot);
        ProfileRow {
            exe: host.exe(slot),
            sha256: identity.map(|i| i.sha256),
            script_sha256: identity.and_then(|i| i.script_sha256),
            script: host.script(slot),
            profile: p.key.to_string(),
            state,
            calls: p.count,
            calls_per_sec: self.rates.slot(slot),
            train_count: p.train_count,
            last_mod_count: p.last_mod_count,
            sequences: p.sequences,
            anomalies: p.anomalies,
            pairs,
            normal_in_secs,
            processes: 0,
            pending: p.life.pending,
            progress: crate::progress::progress(p, host.settings(), crate::clock::tai_now()),
        }
    }
}

/// Writes our pid to a fresh file: an old one is removed first and the new one created with
/// O_EXCL and O_NOFOLLOW, so a symlink or hard link planted at the name is never written through.
fn write_pidfile(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?;
    writeln!(f, "{}", std::process::id())
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the listener so its thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

/// The table a profile is judged by: testing data once normal, training data before.
fn active(p: &Profile) -> &Table {
    if p.state() == State::Normal {
        &p.test
    } else {
        &p.train
    }
}

fn pairs(t: &Table) -> Vec<Pair> {
    let mut out = Vec::new();
    for (&cur, row) in &t.rows {
        for (prev, &flags) in row.iter().enumerate() {
            if flags != 0 {
                let prev = prev as u16;
                out.push(Pair {
                    current: syscalls::name(cur),
                    current_nr: cur,
                    previous: syscalls::name(prev),
                    previous_nr: prev,
                    flags,
                });
            }
        }
    }
    out
}

fn processes(host: &dyn Host, tasks: &[TaskInfo], threads: bool) -> Vec<ProcessRow> {
    let kernel = host.kernel();
    let mut keys: HashMap<u32, (String, Option<State>)> = HashMap::new();
    let mut info = |slot: u32| {
        keys.entry(slot)
            .or_insert_with(|| match kernel.profile_counters(slot) {
                Some(p) => (p.key.to_string(), Some(p.state())),
                None => (String::new(), None),
            })
            .clone()
    };
    let row = |t: &TaskInfo, (profile, state): (String, Option<State>)| ProcessRow {
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        uid: t.uid,
        comm: t.comm.clone(),
        threads: 1,
        exe: host.exe(t.slot),
        script: host.script(t.slot),
        profile,
        state,
        lfc: t.lfc,
        lfc_max: t.lfc_max,
        calls: t.count,
        container_id: None,
        cgroup: host.cgroup_path(t.cgroup),
    };
    // The container follows from the cgroup; a process's row is its leader's.
    let row = |t: &TaskInfo, info| {
        let mut r = row(t, info);
        r.container_id = r.cgroup.as_deref().and_then(crate::cgroup::container_id);
        r
    };
    let mut out: Vec<ProcessRow> = Vec::new();
    if threads {
        for t in tasks {
            out.push(row(t, info(t.slot)));
        }
        out.sort_by_key(|r| (r.pid, r.tid));
        return out;
    }
    let mut index: HashMap<u32, usize> = HashMap::new();
    // Leaders first, so a process's row names its leader's comm and profile.
    let mut sorted: Vec<&TaskInfo> = tasks.iter().collect();
    sorted.sort_by_key(|t| (t.pid, t.tid != t.pid, t.tid));
    for t in sorted {
        match index.get(&t.pid) {
            Some(&i) => {
                let r = &mut out[i];
                r.threads += 1;
                r.calls += t.count;
                r.lfc = r.lfc.max(t.lfc);
                r.lfc_max = r.lfc_max.max(t.lfc_max);
            }
            None => {
                index.insert(t.pid, out.len());
                let mut r = row(t, info(t.slot));
                r.tid = t.pid;
                out.push(r);
            }
        }
    }
    out
}

/// Finds the slot a target names, or says in one sentence why not.
fn resolve(host: &dyn Host, target: &Target) -> Result<u32, String> {
    let kernel = host.kernel();
    match target {
        Target::Pid(pid) => kernel.slot_of_task(*pid).ok_or_else(|| {
            format!("process {pid} is not traced (it does not exist, or it runs without a profile)")
        }),
        Target::Profile(name) => {
            if let Ok(key) = name.parse::<ProfileKey>() {
                return kernel.slot_of(key).ok_or_else(|| {
                    format!("no profile has the key '{name}'; `ebpfh profiles` lists them")
                });
            }
            let known = host.known_exes();
            if let Some((slot, _)) = known.iter().find(|(_, exe)| exe == name) {
                return Ok(*slot);
            }
            if let Ok(meta) = std::fs::metadata(name) {
                use std::os::unix::fs::MetadataExt;
                if let Some(slot) = kernel.slot_of(ProfileKey::from_stat(meta.dev(), meta.ino())) {
                    return Ok(slot);
                }
            }
            let by_name: Vec<&(u32, String)> = known
                .iter()
                .filter(|(_, exe)| {
                    Path::new(exe)
                        .file_name()
                        .is_some_and(|f| f == name.as_str())
                })
                .collect();
            match by_name.as_slice() {
                [(slot, _)] => Ok(*slot),
                [] => Err(format!(
                    "no profile matches '{name}'; `ebpfh profiles` lists them"
                )),
                many => Err(format!(
                    "'{name}' matches {} profiles ({}); name one by its path or DEV:INODE key",
                    many.len(),
                    many.iter()
                        .map(|(_, e)| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// Connections that have not sent their request line yet; the control thread reads them itself,
/// so an idle connection costs a file descriptor and a small buffer, never a thread.
const MAX_PENDING: usize = 128;
/// Connections with a thread of their own (a request waiting for its reply, an event stream).
const MAX_ACTIVE: usize = 64;
/// Connections accepted per round before the waiting ones are read, so that a burst of new
/// connections cannot push out one whose request is already there.
const ACCEPT_BATCH: usize = 16;
/// A connection that has not sent a whole request line within this long is closed.
const IDLE: Duration = Duration::from_secs(5);
/// File descriptors kept free for the monitor's own work (a command's task iterator, a save)
/// once the limit has been met: waiting connections never take the last of them.
const FD_HEADROOM: usize = 8;
/// How long a connection limit learned from running out of file descriptors holds.
const CAP_HOLDS: Duration = Duration::from_secs(30);
/// Longest pause of accepting after a failure (out of file descriptors, say).
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning per this long about the same trouble.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A warning said at most once per [`WARN_EVERY`], with a count of those held back.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    held: u64,
}

impl Throttled {
    fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        if self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            self.held += 1;
            return;
        }
        match std::mem::take(&mut self.held) {
            0 => log::warn!("{msg}"),
            n => log::warn!("{msg} ({n} more since the last such warning)"),
        }
        self.last = Some(Instant::now());
    }
}

struct Pending {
    stream: UnixStream,
    buf: Vec<u8>,
    since: Instant,
    /// The longest request line accepted from this peer.
    limit: u64,
}

/// Only root's `ebpfh profile import` sends more than [`MAX_REQUEST`]: the bundles it imports.
fn request_limit(stream: &UnixStream) -> u64 {
    match nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(c) if c.uid() == 0 => MAX_REQUEST + 2 * crate::bundle::MAX_BYTES,
        _ => MAX_REQUEST,
    }
}

/// What reading a waiting connection gave.
enum Got {
    Waiting,
    Line(String),
    Closed,
    TooLong,
}

fn read_pending(p: &mut Pending) -> Got {
    let mut chunk = [0u8; 4096];
    loop {
        match p.stream.read(&mut chunk) {
            Ok(0) => return Got::Closed,
            Ok(n) => {
                // Only the new bytes are searched: an imported bundle's line can be large.
                let start = p.buf.len();
                p.buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
                    let end = start + i;
                    return Got::Line(String::from_utf8_lossy(&p.buf[..end]).into_owned());
                }
                if p.buf.len() as u64 > p.limit {
                    return Got::TooLong;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Got::Waiting,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Got::Closed,
        }
    }
}

/// Out of file descriptors or memory: accepting again at once would fail again at once.
fn resource_error(e: &std::io::Error) -> bool {
    use nix::libc::{EMFILE, ENFILE, ENOBUFS, ENOMEM};
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

/// Accepts connections and reads their request lines without a thread per connection; each
/// complete request gets a thread of its own (at most [`MAX_ACTIVE`]) to wait for the monitor's
/// reply. Out of file descriptors, it closes the connections idle longest to make room (keeping
/// [`FD_HEADROOM`] free for the monitor), backs off and warns at most once a minute, instead of
/// spinning on accept.
fn accept_loop(listener: UnixListener, tx: SyncSender<Incoming>, stop: Arc<AtomicBool>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("control socket: cannot serve it: {e}");
        return;
    }
    let active = Arc::new(AtomicUsize::new(0));
    let mut pending: VecDeque<Pending> = VecDeque::new();
    // Waiting connections allowed now: MAX_PENDING, or fewer after the descriptors ran out.
    let mut cap = MAX_PENDING;
    let mut cap_since = Instant::now();
    let mut trouble = Throttled::default();
    let mut backoff = Duration::ZERO;
    let mut accept_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let accepting = now >= accept_at;
        let wait = if accepting {
            Duration::from_millis(500)
        } else {
            (accept_at - now).min(Duration::from_millis(500))
        };
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = Vec::with_capacity(pending.len() + 1);
            fds.push(PollFd::new(
                listener.as_fd(),
                if accepting {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                },
            ));
            fds.extend(
                pending
                    .iter()
                    .map(|p| PollFd::new(p.stream.as_fd(), PollFlags::POLLIN)),
            );
            let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(500);
            if poll(&mut fds, PollTimeout::from(ms)).is_err() {
                // EINTR; the next round polls again.
                continue;
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        // Waiting connections first, so a request that has arrived is served before new
        // connections can push it out.
        let mut i = pending.len();
        while i > 0 {
            i -= 1;
            if !ready[i + 1] {
                continue;
            }
            match read_pending(&mut pending[i]) {
                Got::Waiting => {}
                Got::Closed => {
                    pending.remove(i);
                }
                Got::TooLong => {
                    if let Some(mut p) = pending.remove(i) {
                        let r: Reply = Err("the request is too long".into());
                        let _ = p.stream.set_nonblocking(false);
                        let _ = write_line(&mut p.stream, &r);
                    }
                }
                Got::Line(line) => {
                    if let Some(p) = pending.remove(i) {
                        dispatch(p.stream, line, &tx, &active, &mut trouble);
                    }
                }
            }
        }
        pending.retain(|p| p.since.elapsed() < IDLE);
        if cap < MAX_PENDING && cap_since.elapsed() >= CAP_HOLDS {
            cap = MAX_PENDING;
        }
        if !(accepting && ready[0]) {
            continue;
        }
        for _ in 0..ACCEPT_BATCH {
            match listener.accept() {
                Ok((stream, _)) => {
                    backoff = Duration::ZERO;
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    while pending.len() >= cap {
                        pending.pop_front();
                    }
                    pending.push_back(Pending {
                        limit: request_limit(&stream),
                        stream,
                        buf: Vec::new(),
                        since: Instant::now(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Make room: the connections idle longest have sent nothing yet. Keep
                    // FD_HEADROOM descriptors free from now on, so that serving the next
                    // request does not fail for want of one.
                    if resource_error(&e) && pending.len() > 1 {
                        cap = pending.len().saturating_sub(FD_HEADROOM).max(1);
                        cap_since = Instant::now();
                        while pending.len() > cap {
                            pending.pop_front();
                        }
                        trouble.warn(format_args!(
                            "control socket: cannot accept a connection: {e}; closing the connections idle longest to make room"
                        ));
                        continue;
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_BACKOFF);
                    accept_at = Instant::now() + backoff;
                    trouble.warn(format_args!(
                        "control socket: cannot accept a connection: {e}; retrying in {} ms",
                        backoff.as_millis()
                    ));
                    break;
                }
            }
        }
    }
}

/// Hands a complete request to a thread of its own, or says the monitor is busy.
fn dispatch(
    mut stream: UnixStream,
    line: String,
    tx: &SyncSender<Incoming>,
    active: &Arc<AtomicUsize>,
    trouble: &mut Throttled,
) {
    let busy = |stream: &mut UnixStream| {
        let r: Reply = Err("the monitor is busy with other clients; try again".into());
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = write_line(stream, &r);
    };
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_ACTIVE {
        active.fetch_sub(1, Ordering::SeqCst);
        busy(&mut stream);
        return;
    }
    let (tx, counter) = (tx.clone(), active.clone());
    let mut answer = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => {
            active.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("control-client".into())
        .spawn(move || {
            if let Err(e) = handle_request(stream, &line, &tx) {
                log::debug!("control client: {e}");
            }
            counter.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        active.fetch_sub(1, Ordering::SeqCst);
        trouble.warn(format_args!(
            "control socket: cannot start a thread for a client: {e}"
        ));
        busy(&mut answer);
    }
}

fn write_line<T: serde::Serialize>(stream: &mut UnixStream, value: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_string(value).map_err(std::io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())
}

fn handle_request(
    mut stream: UnixStream,
    line: &str,
    tx: &SyncSender<Incoming>,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let creds = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(std::io::Error::from)?;
    let peer = Peer {
        uid: creds.uid(),
        pid: creds.pid(),
    };
    if peer.uid != 0 {
        // The socket is 0600 in a 0700 directory; this is the second lock on the door.
        let r: Reply = Err("only root may control the ebpfh monitor".into());
        return write_line(&mut stream, &r);
    }
    let req = match parse_request(line) {
        Ok(r) => r,
        Err(e) => return write_line(&mut stream, &Err::<Response, String>(e)),
    };
    if req == Request::EventStream {
        let (events_tx, events) = mpsc::sync_channel(SUBSCRIBER_QUEUE);
        if tx
            .try_send(Incoming::Subscribe { events: events_tx })
            .is_err()
        {
            let r: Reply = Err("the monitor is busy; try again".into());
            return write_line(&mut stream, &r);
        }
        let ok: Reply = Ok(Response::Streaming);
        write_line(&mut stream, &ok)?;
        // Ends when the monitor drops us (too slow, or stopping) or the client goes away.
        for line in events {
            stream.write_all(line.as_bytes())?;
            stream.write_all(b"\n")?;
        }
        return Ok(());
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    let reply = match tx.try_send(Incoming::Request {
        req,
        peer,
        reply: reply_tx,
    }) {
        Ok(()) => reply_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| Err("the monitor did not answer in time".into())),
        Err(TrySendError::Full(_)) => Err("the monitor is busy; try again".into()),
        Err(TrySendError::Disconnected(_)) => Err("the monitor is stopping".into()),
    };
    write_line(&mut stream, &reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_subscriber_is_dropped_and_counted() {
        let mut hub = Hub::default();
        let (tx, rx) = mpsc::sync_channel(2);
        hub.subscribe(tx);
        let rec = Record::MonitorStopped {
            pid: 1,
            reason: "x".into(),
            profiles_saved: 0,
            profiles_failed: 0,
        };
        for _ in 0..3 {
            hub.publish(&rec, "{}".into());
        }
        assert_eq!(hub.dropped, 1);
        assert!(hub.subscribers.is_empty());
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn late_subscribers_get_the_recent_anomalies_first() {
        let mut hub = Hub::default();
        let anomaly = Record::EventsLost {
            lost: Default::default(),
            failed: Default::default(),
        };
        hub.publish(&anomaly, "not kept".into());
        assert!(hub.backlog.is_empty());
        let (tx, rx) = mpsc::sync_channel(8);
        hub.subscribe(tx);
        hub.publish(&anomaly, "live".into());
        assert_eq!(
            rx.try_iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            ["live"]
        );
    }

    #[test]
    fn pairs_list_names_and_distances() {
        let mut t = Table::default();
        let mut row = Box::new([0u8; crate::syscalls::NSYMBOLS]);
        row[0] = 0b101;
        t.rows.insert(1, row);
        let p = pairs(&t);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].current, syscalls::name(1));
        assert_eq!(p[0].previous, syscalls::name(0));
        assert_eq!(p[0].distances(), [1, 3]);
    }
}
