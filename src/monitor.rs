//! The monitor: loads and attaches the kernel program, turns its events into JSON lines, keeps
//! profiles on disk, and detaches cleanly on SIGINT/SIGTERM.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
// Per-event lookups by task and slot id: foldhash is several times cheaper than SipHash on
// integer keys, and still seeded per process.
use foldhash::{HashMap, HashMapExt};
use libbpf_rs::RingBufferBuilder;
use nix::libc;

use crate::bpf::{Capacity, Kernel, Stats};
use crate::bundle::{self, Body, Entry, ImportAs};
use crate::cgroup::{self, Cgroups};
use crate::clock::TaiClock;
use crate::control::server::{Host, Hub, Server};
use crate::event::{self, Event, Origin};
use crate::fleet::{self, Outcome};
use crate::hasher::{self, Hasher};
use crate::identity::Identity;
use crate::incident::{self, Incidents};
use crate::jsonl::{self, ProfileRef, Record, Sink};
use crate::metrics::{Exporter, Metrics};
use crate::profile::{Profile, ProfileKey, State};
use crate::respond::{Responder, Why};
use crate::session::{self, Signals};
use crate::settings::Settings;
use crate::store::Store;
use crate::{preflight, procfs, syscalls};

#[derive(Clone, Debug)]
pub struct Options {
    pub state_dir: PathBuf,
    /// JSON-lines destination; `-` is standard output, `None` writes no events.
    pub log: Option<String>,
    pub settings: Settings,
    pub save_interval: Duration,
    pub capacity: Capacity,
    pub verbose: bool,
    /// Executables that responses never touch.
    pub allow: Vec<PathBuf>,
    /// With `settings.respond_listed`: the only executables responses touch.
    pub respond_only: Vec<PathBuf>,
    /// Where the control socket and pid file go; `None` serves no socket.
    pub run_dir: Option<PathBuf>,
    /// Set by whoever hosts the monitor in-process (`ebpfh top`) to stop it like SIGTERM.
    pub stop: Option<Arc<AtomicBool>>,
    /// Where to serve Prometheus metrics; `None` serves none.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// When bursts of anomalies become incidents, and how many anomaly lines each keeps.
    pub incidents: incident::Limits,
}

/// What userspace knows about a kernel profile slot that the kernel does not: its path and
/// content identity.
#[derive(Clone, Debug)]
struct Known {
    key: ProfileKey,
    exe: String,
    /// A script profile's script (empty otherwise).
    script: String,
    /// The uid whose exec created the profile (0 until known).
    owner: u32,
    identity: Option<Identity>,
}

struct Monitor<'k, 'obj> {
    kernel: &'k Kernel<'obj>,
    store: &'k Store,
    sink: Option<Sink>,
    known: HashMap<u32, Known>,
    clock: TaiClock,
    last_stats: Stats,
    responder: Responder,
    /// Profile states seen in the current batch of events (see `state`).
    states: HashMap<u32, State>,
    /// The tunables as they are now (`ebpfh set` changes them).
    settings: Settings,
    host: String,
    hub: Hub,
    /// The open incidents, one per task with recent anomalies.
    incidents: Incidents,
    opts: &'k Options,
    /// Hashes executables off the loop (see `src/hasher.rs`).
    hasher: Hasher,
    /// What waits for the hasher (see [`Hashing`]).
    hashing: Hashing,
    metrics: Option<Metrics>,
    /// Paths of the cgroup ids seen (shared with the control server's `ps`).
    cgroups: RefCell<Cgroups>,
    /// Imported profiles of executables that have not run here yet (see `src/fleet.rs`).
    pending: fleet::Pending,
    stderr_lines: StderrLines,
    /// The lines of the event being handled (see `handle`), reused from event to event.
    lines: Vec<(u64, Record)>,
    /// What every line of a profile or a cgroup repeats, formatted once.
    line_names: LineNames,
}

/// Profile keys as lines spell them, and cgroup ids' paths and containers: formatting a key and
/// looking for a container in a path, per line, were a tenth of an anomaly line's cost. Keys
/// are kept per kernel slot (as many as the profiles), cgroup ids as long as `Cgroups` keeps
/// their paths.
#[derive(Default)]
struct LineNames {
    keys: HashMap<u32, (ProfileKey, String)>,
    cgroups: HashMap<u64, (Option<String>, Option<String>)>,
}

impl LineNames {
    /// `key`, the profile of `slot`, as a line spells it.
    fn key(&mut self, slot: u32, key: ProfileKey) -> &str {
        let (k, name) = self
            .keys
            .entry(slot)
            .or_insert_with(|| (key, key.to_string()));
        // A slot freed and taken by another profile.
        if *k != key {
            *k = key;
            *name = key.to_string();
        }
        name
    }
}

impl Monitor<'_, '_> {
    fn emit(&mut self, time_tai: u64, rec: &Record) {
        let time = self.clock.to_utc(time_tai);
        if let Some(mx) = &self.metrics {
            mx.record(rec);
        }
        // One serialisation serves both the log and the control socket's subscribers.
        if self.hub.wants(rec) {
            let line: Arc<str> = match &mut self.sink {
                Some(sink) => sink.write(time, rec).into(),
                None => jsonl::to_line(time, &self.host, rec).into(),
            };
            self.hub.publish(rec, line);
        } else if let Some(sink) = &mut self.sink {
            sink.write(time, rec);
        }
    }

    /// Writes the lines emitted so far (see [`Sink`]).
    fn flush(&mut self) {
        if let Some(sink) = &mut self.sink {
            sink.flush();
        }
    }

    /// Ends the incidents idle at `now` (CLOCK_TAI); all of them with `stopping`.
    fn close_incidents(&mut self, now: u64, stopping: bool) {
        let mut closed = Vec::new();
        if stopping {
            self.incidents.close_all(now, &mut closed);
        } else {
            self.incidents.tick(now, &mut closed);
        }
        let clock = self.clock;
        for c in closed {
            let time = c.time;
            let rec = c.record(|t| clock.to_utc(t));
            self.emit_incident_line(time, &rec);
        }
    }

    /// An anomaly or incident line the incidents let out. A quiet incident (not an alarm) is
    /// counted, and written only with `--log-quiet`.
    fn emit_incident_line(&mut self, time: u64, rec: &Record) {
        if incident::is_quiet(rec) {
            self.stderr_lines.ended(rec);
            self.hub.count_quiet();
            if !self.opts.incidents.log_quiet {
                if let Some(mx) = &self.metrics {
                    mx.record(rec);
                }
                return;
            }
        } else {
            self.stderr_lines.log(rec);
        }
        self.emit(time, rec);
    }

    fn emit_now(&mut self, rec: &Record) {
        self.emit(crate::clock::tai_now(), rec);
    }

    /// Path and key of a slot, learning them from the kernel and /proc the first time.
    /// `o` names the paths only on `profile_created` (see `event::Origin`).
    fn known(&mut self, slot: u32, tgid: u32, o: &Origin) -> &Known {
        let learned = self
            .known
            .get(&slot)
            .is_some_and(|k| !k.exe.is_empty() || (o.filename.is_empty() && o.path.is_empty()));
        if learned {
            return &self.known[&slot];
        }
        let key = self
            .kernel
            .profile_counters(slot)
            .map(|p| p.key)
            .unwrap_or_default();
        // A script's exec names the script, not the interpreter /proc/PID/exe points to.
        let hint = if key.is_script() { "" } else { &o.filename };
        let mut exe = procfs::exe_path(tgid, key, &o.path, hint);
        if exe.is_empty() {
            // The same executable under another profile (the interpreter's own, another script).
            let same = |k: &&Known| k.key.with_script(0) == key.with_script(0) && !k.exe.is_empty();
            if let Some(k) = self.known.values().find(same) {
                exe.clone_from(&k.exe);
            }
        }
        let script = if key.is_script() {
            procfs::script_path(tgid, &o.script, &o.cwd)
        } else {
            String::new()
        };
        let before = self.known.get(&slot);
        let k = Known {
            key,
            exe,
            script,
            // The event that names the paths is the creator's profile_created.
            owner: before.map_or(o.uid, |k| k.owner),
            identity: before.and_then(|k| k.identity),
        };
        self.known.insert(slot, k);
        &self.known[&slot]
    }

    /// A profile's state, read from the kernel once per batch of events: reading it means
    /// copying the whole 4 KiB profile slot, which dominated the cost of an event.
    fn state(&mut self, slot: u32) -> State {
        let kernel = self.kernel;
        *self.states.entry(slot).or_insert_with(|| {
            kernel
                .profile_state(slot)
                .map(State::from_bits)
                .unwrap_or(State::Training)
        })
    }

    /// Asks the hasher for the content identity of a slot's executable, opened through
    /// `/proc/PID/exe` while the process lives (`tgid` 0: not at all), else through its path,
    /// and only if that is still the profile's inode. The loop only opens the file; true if a
    /// job was sent. Without room in the queue the slot waits in `hashing.later`.
    fn request_identity(&mut self, slot: u32, tgid: u32) -> bool {
        let Some(k) = self.known.get(&slot) else {
            return false;
        };
        if k.identity.is_some() || self.hashing.in_flight.contains(&slot) {
            return false;
        }
        if !self.hasher.has_room() {
            self.hashing.later.insert(slot);
            return false;
        }
        self.hashing.later.remove(&slot);
        let proc_exe = PathBuf::from(format!("/proc/{tgid}/exe"));
        let exe = PathBuf::from(&k.exe);
        let mut paths = Vec::new();
        if tgid != 0 {
            paths.push(proc_exe.as_path());
        }
        if !k.exe.is_empty() {
            paths.push(exe.as_path());
        }
        let Some(opened) = hasher::open_first(k.key.with_script(0), &paths) else {
            return false;
        };
        let script = if k.key.is_script() && !k.script.is_empty() {
            hasher::open(std::path::Path::new(&k.script), None)
        } else {
            None
        };
        let job = hasher::Job {
            slot,
            exe: opened,
            script,
        };
        if self.hasher.submit(job) {
            self.hashing.in_flight.insert(slot);
            true
        } else {
            self.hashing.later.insert(slot);
            false
        }
    }

    /// Takes the hasher's answers: each slot gets its identity, its held `profile_created` line
    /// is written with it, and a pending import for it is applied. Then writes the held lines
    /// whose wait is over, and sends slots that waited for room.
    fn collect_identities(&mut self) {
        while let Some(done) = self.hasher.try_recv() {
            self.identified(done);
        }
        let now = Instant::now();
        let late: Vec<u32> = self
            .hashing
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(&slot, _)| slot)
            .collect();
        for slot in late {
            if let Some(h) = self.hashing.held.remove(&slot) {
                self.hashing.late += 1;
                self.emit(h.time, &h.rec);
            }
        }
        while self.hasher.has_room() {
            let Some(slot) = self.hashing.later.pop_first() else {
                break;
            };
            self.request_identity(slot, 0);
        }
        self.hashing.warn();
    }

    /// At stop: waits up to [`hasher::STOP_WAIT`] for the digests of held lines, then writes
    /// every held line.
    fn finish_identities(&mut self) {
        let end = Instant::now() + hasher::STOP_WAIT;
        while !self.hashing.held.is_empty() && self.hasher.in_flight() > 0 {
            let left = end.saturating_duration_since(Instant::now());
            match self.hasher.recv_timeout(left) {
                Some(done) => self.identified(done),
                None => break,
            }
        }
        let mut held: Vec<Held> = self.hashing.held.drain().map(|(_, h)| h).collect();
        held.sort_by_key(|h| h.time);
        for h in held {
            self.hashing.late += 1;
            self.emit(h.time, &h.rec);
        }
    }

    fn identified(&mut self, done: hasher::Done) {
        let slot = done.slot;
        self.hashing.in_flight.remove(&slot);
        let id = done.exe.map(|sha256| Identity {
            sha256,
            script_sha256: done.script,
        });
        if let (Some(k), Some(id)) = (self.known.get_mut(&slot), id) {
            k.identity = k.identity.or(Some(id));
        }
        let id = self.known.get(&slot).and_then(|k| k.identity);
        if let Some(mut h) = self.hashing.held.remove(&slot) {
            if let Record::ProfileCreated { sha256, .. } = &mut h.rec {
                *sha256 = id.map(|i| i.sha256);
            }
            self.emit(h.time, &h.rec);
        }
        // After the profile_created line, so that the profile_imported line follows it.
        if let Some(id) = id {
            self.apply_pending(slot, &id);
        }
    }

    /// `process` with its cgroup path and container, from the cache of cgroup ids.
    fn in_cgroup(&mut self, mut process: jsonl::Process, id: u64) -> jsonl::Process {
        // An id's path never changes once looked up (see `Cgroups`), nor its container then.
        let (path, container) = self.line_names.cgroups.entry(id).or_insert_with(|| {
            let path = self.cgroups.borrow_mut().path(id);
            let container = path.as_deref().and_then(cgroup::container_id);
            (path, container)
        });
        process.cgroup.clone_from(path);
        process.container_id.clone_from(container);
        process
    }

    fn process(&mut self, tid: u32, o: &Origin) -> (jsonl::Process, ProfileRef) {
        let k = self.known(o.slot, o.tgid, o);
        let (key, exe, script) = (
            k.key,
            k.exe.clone(),
            (!k.script.is_empty()).then(|| k.script.clone()),
        );
        let process = jsonl::Process {
            pid: o.tgid,
            tid,
            ppid: o.ppid,
            uid: o.uid,
            comm: o.comm.clone(),
            exe,
            cgroup: None,
            container_id: None,
        };
        let process = self.in_cgroup(process, o.cgroup);
        let profile = ProfileRef {
            profile: self.line_names.key(o.slot, key).to_owned(),
            profile_state: self.state(o.slot),
            script,
        };
        (process, profile)
    }

    /// Handles the records the last poll read; true if the batch was full (more may wait).
    fn handle_batch(&mut self, queue: &RefCell<Batch>) -> bool {
        let batch = std::mem::take(&mut *queue.borrow_mut());
        for data in batch.records() {
            self.handle_raw(data);
        }
        let full = batch.full();
        let mut batch = batch;
        batch.clear();
        // Back in place, keeping its buffers for the next poll.
        *queue.borrow_mut() = batch;
        full
    }

    /// Decodes one ring-buffer record and handles it.
    fn handle_raw(&mut self, data: &[u8]) {
        let kernel = self.kernel;
        let known = &self.known;
        let decoded = event::decode(data, |slot| match known.get(&slot) {
            Some(k) => k.key,
            None => kernel
                .profile_counters(slot)
                .map(|p| p.key)
                .unwrap_or_default(),
        });
        match decoded {
            Ok((ev, origin)) => self.handle(&ev, &origin),
            Err(e) => log::warn!("skipped a kernel event: {e}"),
        }
    }

    fn handle(&mut self, ev: &Event, o: &Origin) {
        let (process, profile) = self.process(ev.tid(), o);
        let mut sha256 = None;
        let mut identity = None;
        let mut hashing = false;
        match *ev {
            Event::ProfileCreated { .. } => {
                identity = self.known.get(&o.slot).and_then(|k| k.identity);
                sha256 = identity.map(|i| i.sha256);
                hashing = identity.is_none() && self.request_identity(o.slot, o.tgid);
                if identity.is_none() && !hashing && self.hashing.later.contains(&o.slot) {
                    self.hashing.deferred += 1;
                }
                log::debug!("new profile {} for {}", profile.profile, process.exe);
            }
            // Logged where its line is written: not every anomalous call keeps one.
            Event::Anomaly { .. } => {}
            Event::NormalStarted { before, .. } => log::info!(
                "{} is now normal ({} sequences learned)",
                process.exe,
                before.sequences
            ),
            Event::NormalStopped { reason, .. } => {
                log::warn!("{} is no longer normal ({})", process.exe, reason.as_str())
            }
            Event::TolerizeLimit { lfc, .. } => log::warn!(
                "pid {} ({}) passed the tolerize limit (LFC {}): training data reset",
                process.pid,
                process.exe,
                lfc
            ),
            Event::PendingAccepted { pending, .. } => log::info!(
                "{}: {pending} pending pair sets accepted after runs that showed them again",
                process.exe
            ),
            Event::NewSequence { .. } => {}
            Event::Delay { delay_ms, lfc, .. } => {
                self.responder.on_stop(process.pid, delay_ms, o.time);
                // On disk before the line is written: whoever sees the line and kills the
                // monitor must still find the process in the stopped set.
                if let Err(e) = self.responder.save() {
                    log::error!("cannot record a stopped process in the state directory: {e}");
                }
                log::info!(
                    "delaying pid {} ({}) by {delay_ms} ms (LFC {lfc})",
                    process.pid,
                    process.exe
                );
            }
            Event::ExecveDenied {
                lfc,
                killed,
                ref filename,
                ..
            } => log::warn!(
                "denied execve of '{filename}' to pid {} ({}), LFC {lfc}{}",
                process.pid,
                process.exe,
                if killed { "; killed it" } else { "" }
            ),
        }
        let cx = jsonl::Context {
            process,
            profile,
            sha256,
        };
        let rec = Record::from_event(ev, cx, syscalls::line_name);
        if hashing {
            // Written when the digest is known, or at the deadline without it.
            let deadline = Instant::now() + hasher::LINE_WAIT;
            self.hashing.held.insert(
                o.slot,
                Held {
                    deadline,
                    time: o.time,
                    rec,
                },
            );
            return;
        }
        if matches!(rec, Record::Anomaly { .. }) {
            self.hub.count_anomaly();
            if let Some(mx) = &self.metrics {
                mx.anomaly();
            }
        }
        let clock = self.clock;
        let mut lines = std::mem::take(&mut self.lines);
        self.incidents
            .lines_into(o.time, rec, |t| clock.to_utc(t), &mut lines);
        for (time, rec) in lines.drain(..) {
            self.emit_incident_line(time, &rec);
        }
        // Kept for the next event: a storm makes one for every anomalous call.
        self.lines = lines;
        // After the profile_created line, so that the profile_imported line follows it.
        if let Some(id) = identity {
            self.apply_pending(o.slot, &id);
        }
    }

    /// Reports what the kernel dropped since the last check (design: every loss is shown).
    fn check_losses(&mut self) {
        let now = self.kernel.stats();
        let before = std::mem::replace(&mut self.last_stats, now);
        let mut lost = BTreeMap::new();
        for (i, name) in event::KIND_NAMES.iter().enumerate().skip(1) {
            let d = now.events_lost[i] - before.events_lost[i];
            if d > 0 {
                lost.insert(name.to_string(), d);
            }
        }
        let mut failed = BTreeMap::new();
        for (name, d) in [
            ("rows_full", now.rows_full - before.rows_full),
            ("profiles_full", now.profiles_full - before.profiles_full),
            ("quota_refused", now.quota_refused - before.quota_refused),
            ("tasks_failed", now.tasks_failed - before.tasks_failed),
        ] {
            if d > 0 {
                failed.insert(name.to_string(), d);
            }
        }
        if lost.is_empty() && failed.is_empty() {
            return;
        }
        log::warn!("the kernel dropped events {lost:?} and failed inserts {failed:?}; see the events_lost line");
        self.emit_now(&Record::EventsLost { lost, failed });
    }

    /// Resumes the stopped tasks whose delay is over (all of them with `now = u64::MAX`), and
    /// keeps the on-disk set current so a restarted monitor or `ebpfh resume` can finish the job.
    fn resume(&mut self, now: u64, why: Why) {
        let tai = crate::clock::tai_now();
        for (s, resumed) in self.responder.resume_due(now) {
            self.emit(
                tai,
                &Record::Resumed {
                    pid: s.pid,
                    stopped_ms: tai.saturating_sub(s.since) / 1_000_000,
                    reason: why.as_str().into(),
                    resumed,
                },
            );
        }
        if let Err(e) = self.responder.save() {
            log::error!("cannot record the stopped processes in the state directory: {e}");
        }
    }

    /// Every profile the kernel holds, with its path.
    fn snapshot(&mut self) -> Vec<Profile> {
        let mut out = Vec::new();
        for slot in self.kernel.slots() {
            if let Some(mut p) = self.kernel.profile(slot) {
                if let Some(k) = self.known.get(&slot) {
                    p.exe = k.exe.clone();
                    p.script = k.script.clone();
                    p.owner = k.owner;
                    p.identity = k.identity;
                }
                out.push(p);
            }
        }
        out
    }

    /// Applies the pending import for an executable that just ran for the first time, with the
    /// bundle's state: the host has nothing of its own to be stricter with.
    fn apply_pending(&mut self, slot: u32, id: &Identity) {
        let Some(e) = self.pending.get(id).cloned() else {
            return;
        };
        match self.merge_into(slot, &e, ImportAs::Bundle) {
            Ok(outcome) => {
                log::info!(
                    "applied the imported profile of {} to its first run",
                    outcome.exe
                );
                self.pending.done(id);
                self.emit_now(&Record::ProfileImported { outcome });
                if let Some(err) = self.save().error {
                    log::error!("{err}");
                }
            }
            Err(err) => log::error!(
                "cannot apply the imported profile of {} (kept for its next run): {err}",
                e.path()
            ),
        }
    }

    /// Merges a bundle's profile into the live one in `slot`, retrying while the hot path changes
    /// its state under the merge.
    fn merge_into(&mut self, slot: u32, e: &Entry, how: ImportAs) -> Result<Outcome, String> {
        // Set while a promotion copies the tables (`bpf/ebpfh.h`); wait for it to finish.
        const PS_PROMOTING: u32 = crate::bpf::types::abi_constants::ABI_PS_PROMOTING.0;
        for _ in 0..1000 {
            let mut local = self.kernel.profile(slot).ok_or("the profile is gone")?;
            if local.state & PS_PROMOTING != 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if let Some(k) = self.known.get(&slot) {
                local.exe = k.exe.clone();
                local.identity = k.identity;
            }
            let merged = bundle::import_into(&local, e, how);
            let expect = local.state & crate::profile::PS_KEPT;
            match self
                .kernel
                .merge_profile(slot, &merged, expect, how == ImportAs::Normal)
            {
                Ok(()) => {
                    let k = self.known.entry(slot).or_insert(Known {
                        key: local.key,
                        exe: String::new(),
                        script: String::new(),
                        owner: 0,
                        identity: None,
                    });
                    if k.exe.is_empty() {
                        k.exe = merged.exe.clone();
                    }
                    k.identity = k.identity.or(Some(e.identity));
                    self.states.remove(&slot);
                    return Ok(Outcome::applied("merged", &merged));
                }
                Err(crate::bpf::ImportError::Busy) => continue,
                Err(err) => return Err(err.to_string()),
            }
        }
        Err(crate::bpf::ImportError::Busy.to_string())
    }

    /// Imports one bundle profile into the running kernel (see `src/fleet.rs` for where it goes).
    fn import_entry(&mut self, e: &Entry, how: ImportAs) -> Result<Vec<Outcome>, String> {
        let mut slots: Vec<u32> = self
            .known
            .iter()
            .filter(|(_, k)| k.identity == Some(e.identity))
            .map(|(&s, _)| s)
            .collect();
        slots.sort_unstable();
        if slots.is_empty() {
            match fleet::find_local(e) {
                Some((key, path)) => match self.kernel.slot_of(key) {
                    Some(slot) => slots.push(slot),
                    None => {
                        let p = bundle::new_profile(key, &path, e, how);
                        match self.kernel.create_profile(&p).map_err(|e| e.to_string())? {
                            Some(slot) => {
                                self.known.insert(
                                    slot,
                                    Known {
                                        key,
                                        exe: path,
                                        script: String::new(),
                                        // An operator's import, not a user's exec.
                                        owner: 0,
                                        identity: Some(e.identity),
                                    },
                                );
                                return Ok(vec![Outcome::applied("created", &p)]);
                            }
                            // It started running meanwhile: merge into the profile it got.
                            None => slots.extend(self.kernel.slot_of(key)),
                        }
                    }
                },
                None => {
                    self.pending.keep(fleet::pending_form(e, how), &self.host)?;
                    return Ok(vec![Outcome::pending(e)]);
                }
            }
        }
        slots
            .into_iter()
            .map(|slot| self.merge_into(slot, e, how))
            .collect()
    }

    /// Saves every profile. Whatever failed is summed up in one sentence (see [`Saved`]), so a
    /// failing disk costs one log line per save, not one per file.
    fn save(&mut self) -> Saved {
        let mut profiles = self.snapshot();
        // A profile that never learned a pair has nothing to keep; writing it anyway would let
        // throwaway programs (a memfd per exec) pile files up in the state directory. One that
        // has a file is written, so that a reset reaches the disk.
        profiles.retain(|p| {
            p.train.pairs() + p.test.pairs() > 0
                || std::fs::symlink_metadata(self.store.path_of(&p.key)).is_ok()
        });
        let report = self.store.save_all(&profiles);
        if let Some(mx) = &self.metrics {
            mx.saved(report.saved, report.failed.len());
        }
        log::debug!(
            "saved {} changed profiles of {}",
            report.saved,
            profiles.len()
        );
        Saved {
            saved: profiles.len() - report.failed.len(),
            failed: report.failed.len(),
            error: report.failed.first().map(|(_, why)| {
                format!(
                    "could not save {} of {} profiles ({why}{}); their earlier files, if any, are kept",
                    report.failed.len(),
                    profiles.len(),
                    if report.failed.len() > 1 { ", and likewise the others" } else { "" }
                )
            }),
        }
    }
}

/// A `profile_created` line waiting for its executable's digest.
struct Held {
    /// When it is written without one.
    deadline: Instant,
    /// The event's time (CLOCK_TAI), which the line keeps.
    time: u64,
    rec: Record,
}

/// The profiles waiting for their executable's digest (see `src/hasher.rs`). Each set is bounded
/// by the profile table, and `held` by the hasher's queue.
#[derive(Default)]
struct Hashing {
    /// Slots with a job at the hasher.
    in_flight: BTreeSet<u32>,
    /// Slots to send when the hasher has room, through their path.
    later: BTreeSet<u32>,
    /// `profile_created` lines held until their digest is known, by slot.
    held: HashMap<u32, Held>,
    /// `profile_created` lines written without `sha256` because the queue was full.
    deferred: u64,
    /// `profile_created` lines written without `sha256` because hashing took longer than
    /// [`hasher::LINE_WAIT`].
    late: u64,
    /// `deferred` and `late` as last said on stderr, and when.
    said: (u64, u64, Option<Instant>),
}

impl Hashing {
    /// Says on stderr, at most every [`hasher::LINE_WAIT`], which lines went out without a digest.
    fn warn(&mut self) {
        let (deferred, late, when) = self.said;
        if (self.deferred, self.late) == (deferred, late)
            || when.is_some_and(|t| t.elapsed() < hasher::LINE_WAIT)
        {
            return;
        }
        log::warn!(
            "{} profile_created lines went out without sha256 ({} while {} executables already \
             waited to be hashed, {} hashed for longer than {}); each digest reaches \
             `ebpfh profiles --json` and the profile file once it is computed",
            self.deferred + self.late - deferred - late,
            self.deferred - deferred,
            hasher::QUEUE,
            self.late - late,
            humantime::format_duration(hasher::LINE_WAIT)
        );
        self.said = (self.deferred, self.late, Some(Instant::now()));
    }
}

/// What one save of every profile did.
struct Saved {
    /// Profiles whose file now holds exactly their state (written now, or already identical).
    saved: usize,
    /// Profiles that could not be written.
    failed: usize,
    /// One sentence about the failures, if any.
    error: Option<String>,
}

/// What the control server may use of the monitor (see `control::server`).
impl Host for Monitor<'_, '_> {
    fn kernel(&self) -> &Kernel<'_> {
        self.kernel
    }

    fn exe(&self, slot: u32) -> String {
        self.known
            .get(&slot)
            .map(|k| k.exe.clone())
            .unwrap_or_default()
    }

    fn identity(&self, slot: u32) -> Option<Identity> {
        self.known.get(&slot).and_then(|k| k.identity)
    }

    fn cgroup_path(&self, id: u64) -> Option<String> {
        self.cgroups.borrow_mut().path(id)
    }

    fn script(&self, slot: u32) -> String {
        self.known
            .get(&slot)
            .map(|k| k.script.clone())
            .unwrap_or_default()
    }

    /// A script profile is named by its script: the interpreter's path names its own profile.
    fn known_exes(&self) -> Vec<(u32, String)> {
        self.known
            .iter()
            .map(|(&slot, k)| {
                let name = if k.key.is_script() { &k.script } else { &k.exe };
                (slot, name.clone())
            })
            .collect()
    }

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn set_settings(&mut self, settings: Settings) -> Result<(), String> {
        self.kernel
            .set_settings(&settings, std::process::id())
            .map_err(|e| format!("{e:#}"))?;
        self.incidents
            .set_rule(incident::Rule::new(&(&settings).into()));
        self.settings = settings;
        Ok(())
    }

    fn save(&mut self) -> Result<usize, String> {
        let saved = Monitor::save(self);
        saved.error.map_or(Ok(saved.saved), Err)
    }

    fn persist(&mut self, slot: u32) -> Result<(), String> {
        let mut p = self
            .kernel
            .profile(slot)
            .ok_or("the profile is gone from the kernel")?;
        p.exe = Host::exe(self, slot);
        p.identity = Host::identity(self, slot);
        self.store.save(&p).map_err(|e| e.to_string())
    }

    fn persist_setting(&mut self, setting: &str, value: &str) -> Result<(), String> {
        let mut all = self.store.load_settings().unwrap_or_default();
        all.retain(|(k, _)| k != setting);
        all.push((setting.to_string(), value.to_string()));
        self.store.save_settings(&all).map_err(|e| e.to_string())
    }

    fn emit(&mut self, rec: &Record) {
        self.emit_now(rec);
        // Before the reply: whoever asked may read the log next.
        self.flush();
    }

    fn hub(&mut self) -> &mut Hub {
        &mut self.hub
    }

    fn export(&mut self, slots: &[u32]) -> (Body, Vec<String>) {
        let mut profiles = Vec::new();
        for &slot in slots {
            let identity = Host::identity(self, slot);
            if identity.is_none() {
                // Not known yet, or its file could not be read before: try (again) for a
                // later export.
                self.request_identity(slot, 0);
            }
            if let Some(mut p) = self.kernel.profile(slot) {
                p.exe = Host::exe(self, slot);
                p.identity = identity;
                profiles.push(p);
            }
        }
        let source = bundle::Source::here(&self.host, &self.settings);
        let refs: Vec<&Profile> = profiles.iter().collect();
        let (entries, skipped) = fleet::entries(&refs, &source);
        (Body::new(&self.host, entries), skipped)
    }

    fn import(&mut self, bodies: &[Body], how: ImportAs) -> Result<Vec<Outcome>, String> {
        let incoming =
            bundle::merge_entries(bodies.iter().flat_map(|b| b.profiles.iter().cloned()));
        let mut out = Vec::new();
        let mut failed = None;
        for e in &incoming {
            match self.import_entry(e, how) {
                Ok(o) => out.extend(o),
                Err(err) => {
                    failed = Some(format!(
                        "cannot import the profile of {}: {err} ({} other profiles were imported)",
                        e.path(),
                        out.len()
                    ));
                    break;
                }
            }
        }
        for outcome in &out {
            self.emit_now(&Record::ProfileImported {
                outcome: outcome.clone(),
            });
        }
        self.flush();
        // On disk at once: an imported profile is kept as carefully as one learned here.
        if let Some(err) = Monitor::save(self).error {
            failed.get_or_insert(format!("the profiles were imported, but {err}"));
        }
        match failed {
            Some(f) => Err(f),
            None => Ok(out),
        }
    }

    fn state_dir(&self) -> String {
        self.opts.state_dir.display().to_string()
    }

    fn log_target(&self) -> Option<String> {
        self.opts.log.clone()
    }

    fn hashing(&self) -> crate::control::protocol::Hashing {
        crate::control::protocol::Hashing {
            waiting: self.hashing.in_flight.len() + self.hashing.later.len(),
            deferred: self.hashing.deferred,
            late: self.hashing.late,
        }
    }
}

/// Runs the monitor until SIGINT or SIGTERM.
pub fn run(opts: &Options) -> Result<()> {
    preflight::check()?;
    crate::safedir::prepare(&opts.state_dir, "state directory")?;
    let store = Store::open(&opts.state_dir)?;
    let _lock = store.lock()?;
    // Before the socket and pid file exist, so that a signal from now on stops the monitor
    // through its loop, which removes them, and never by the default action.
    let signals = Signals::catch(true)?;
    let mut exporter = opts.metrics_addr.map(Exporter::bind).transpose()?;
    let host_name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Also before the socket: a log that cannot be opened stops the start with nothing left.
    let sink = match &opts.log {
        Some(target) => Some(
            Sink::open(target, host_name.clone())
                .with_context(|| format!("cannot open the event log '{target}'"))?,
        ),
        None => None,
    };
    let mut server = match &opts.run_dir {
        Some(dir) => Some(Server::start(dir)?),
        None => None,
    };
    // load_all warns about every file it sets aside, naming where it went.
    let mut loaded = store.load_all();
    if opts.settings.lifecycle == crate::settings::Lifecycle::Ebpfh {
        loaded.profiles.iter_mut().for_each(Profile::adopt_pending);
    }
    let responder = Responder::open(&opts.state_dir).with_context(|| {
        format!(
            "cannot read the stopped-process list in '{}'",
            opts.state_dir.display()
        )
    })?;

    let pid = std::process::id();
    let mut obj = MaybeUninit::uninit();
    let settings = with_saved_settings(&store, &opts.settings);
    let mut kernel = session::load(&mut obj, opts.capacity, &settings, opts.verbose)?;
    let slots = kernel.load_profiles(&loaded.profiles)?;
    let known = slots
        .iter()
        .zip(&loaded.profiles)
        .map(|(&slot, p)| {
            (
                slot,
                Known {
                    key: p.key,
                    exe: p.exe.clone(),
                    script: p.script.clone(),
                    owner: p.owner,
                    identity: p.identity,
                },
            )
        })
        .collect();
    // The quota counts what a user created before this start too.
    let mut owned: BTreeMap<u32, u32> = BTreeMap::new();
    for p in loaded.profiles.iter().filter(|p| p.owner != 0) {
        *owned.entry(p.owner).or_default() += 1;
    }
    for (uid, n) in owned {
        kernel.count_owned(uid, n)?;
    }
    let policies = opts
        .allow
        .iter()
        .map(|p| (p, false))
        .chain(opts.respond_only.iter().map(|p| (p, true)));
    for (path, respond) in policies {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot set a response policy for '{}'", path.display()))?;
        kernel.set_policy(ProfileKey::from_stat(meta.dev(), meta.ino()), respond)?;
    }
    // Before attaching: the calls counted in the loaded profiles are not this run's.
    let metrics = exporter.as_ref().map(|_| Metrics::new(&kernel));
    session::start(&kernel, true)?;
    log::info!(
        "monitoring: {} profiles loaded from '{}', {} set aside",
        loaded.profiles.len(),
        opts.state_dir.display(),
        loaded.set_aside.len()
    );

    let rule = incident::Rule::new(&(&settings).into());
    let mut m = Monitor {
        kernel: &kernel,
        store: &store,
        sink,
        known,
        clock: TaiClock::new(),
        last_stats: Stats::default(),
        responder,
        states: HashMap::new(),
        settings,
        host: host_name,
        hub: Hub::default(),
        incidents: Incidents::new(opts.incidents, rule),
        opts,
        hasher: Hasher::start().context("cannot start the thread that hashes executables")?,
        hashing: Hashing::default(),
        metrics,
        cgroups: RefCell::new(Cgroups::new()),
        pending: fleet::Pending::open(&opts.state_dir),
        stderr_lines: StderrLines::default(),
        lines: Vec::new(),
        line_names: LineNames::default(),
    };
    if let (Some(e), Some(mx)) = (&mut exporter, &m.metrics) {
        e.serve(mx)?;
    }
    // Profiles saved before they carried an identity get one, if their file is still there:
    // hashed later, never before the socket answers.
    m.hashing.later.extend(
        m.known
            .iter()
            .filter(|(_, k)| k.identity.is_none() && !k.exe.is_empty())
            .map(|(&slot, _)| slot),
    );
    // Tasks a killed monitor left stopped: resume those whose delay is over, keep the rest.
    m.resume(crate::clock::tai_now(), Why::DelayOver);
    let mut responses = Vec::new();
    if opts.settings.delay_factor_ms > 0 {
        responses.push("delay".to_string());
    }
    if kernel.execve_abort() {
        responses.push("execve_abort".to_string());
    } else if opts.settings.abort_execve > 0 {
        log::warn!(
            "execve abort is unavailable on this kernel: it needs the BPF LSM (boot with lsm=...,bpf); \
             the other responses work"
        );
    }
    m.emit_now(&Record::MonitorStarted {
        version: env!("CARGO_PKG_VERSION").into(),
        pid,
        responses,
        profiles_loaded: loaded.profiles.len(),
        profiles_set_aside: loaded.set_aside.len(),
        state_dir: opts.state_dir.display().to_string(),
    });

    m.flush();

    let queue = RefCell::new(Batch::default());
    let mut builder = RingBufferBuilder::new();
    builder
        .add(kernel.events_map(), |data: &[u8]| {
            // Decoded after the poll: naming a record's profile needs the monitor's state.
            queue.borrow_mut().push(data)
        })
        .context("cannot read the kernel's ring buffer")?;
    let ring = builder
        .build()
        .context("cannot read the kernel's ring buffer")?;

    let mut next_save = Instant::now() + opts.save_interval;
    let mut next_check = Instant::now() + Duration::from_secs(1);
    let mut busy = false;
    let reason = loop {
        // EINTR from a signal is expected; the flags below say which.
        // Wake in time for the next resume: a delay must not last longer than asked.
        // A full batch leaves more in the ring: read on without waiting.
        let timeout = if busy {
            Duration::ZERO
        } else {
            m.responder
                .next_due()
                .map_or(Duration::from_millis(200), |due| {
                    let now = crate::clock::tai_now();
                    Duration::from_nanos(due.saturating_sub(now))
                        .clamp(Duration::from_millis(1), Duration::from_millis(200))
                })
        };
        // Every anomaly stamped before this moment is read by the poll below, so incidents
        // idle at this moment cannot be continued by an event still in the ring.
        let polled_at = crate::clock::tai_now();
        // A full batch ends the poll early (an error to libbpf, hence ignored like EINTR).
        let _ = ring.poll(timeout);
        m.kernel.sync_clock();
        m.states.clear();
        let read = queue.borrow().len();
        busy = m.handle_batch(&queue);
        m.collect_identities();
        // Only once the ring is drained is every anomaly stamped before `polled_at` read.
        if !busy {
            m.close_incidents(polled_at, false);
        }
        m.resume(crate::clock::tai_now(), Why::DelayOver);
        if signals.hangup() {
            if let Some(sink) = &mut m.sink {
                match sink.reopen() {
                    Ok(()) => log::info!("reopened the event log"),
                    Err(e) => log::error!("cannot reopen the event log: {e}"),
                }
            }
        }
        if let Some(server) = &mut server {
            server.service(&mut m);
        }
        let now = Instant::now();
        if now >= next_check {
            m.check_losses();
            if let Some(mx) = &mut m.metrics {
                mx.tick(m.kernel, m.sink.as_ref().map_or(0, |s| s.failed));
            }
            if let Some(sink) = &mut m.sink {
                sink.check_path();
            }
            next_check = now + Duration::from_secs(1);
        }
        if now >= next_save {
            if let Some(e) = m.save().error {
                log::error!(
                    "{e}; trying again in {}",
                    humantime::format_duration(opts.save_interval)
                );
            }
            next_save = now + opts.save_interval;
        }
        if let Some(signal) = signals.stop() {
            break signal;
        }
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            break "stopped";
        }
        // Once per batch, and so whenever the ring goes idle: no line waits for the next event.
        m.flush();
        // A ring read to its last record makes the kernel wake the monitor for the very next
        // one, and the task that made that event pays for the wakeup (a self-interrupt, dear on
        // a VM): under a steady stream, one per event, for it and for the monitor. Waiting a
        // moment after a partial batch lets the next events gather behind one wakeup.
        if read > 0 && !busy {
            std::thread::sleep(GATHER);
        }
    };

    // Drain what is already in the ring, then save what the kernel learned.
    loop {
        let _ = ring.consume();
        if !m.handle_batch(&queue) {
            break;
        }
    }
    m.finish_identities();
    m.close_incidents(crate::clock::tai_now(), true);
    m.check_losses();
    kernel.detach();
    // Nothing can stop a task any more: let every delayed task go before leaving.
    m.resume(u64::MAX, Why::MonitorStopping);
    let saved = m.save();
    match &saved.error {
        None => log::info!(
            "stopping ({reason}): saved {} profiles to '{}'",
            saved.saved,
            opts.state_dir.display()
        ),
        Some(e) => log::error!("stopping ({reason}): {e}"),
    }
    m.emit_now(&Record::MonitorStopped {
        pid,
        reason: reason.into(),
        profiles_saved: saved.saved,
        profiles_failed: saved.failed,
    });
    m.flush();
    Ok(())
}

/// Ring-buffer records are read this many at a time at most, so that a storm cannot keep one
/// poll going (libbpf reads for as long as there is data): between batches the monitor
/// writes its lines, ends idle incidents and answers its socket.
const BATCH_RECORDS: usize = 4096;

/// How long the monitor lets events gather after reading a partial batch (see the event
/// loop): at most this much later for a line, about one wakeup per this long for a stream.
const GATHER: Duration = Duration::from_millis(1);

/// Kernel records read by one poll, copied out of the ring so that the kernel has the room
/// again at once; one buffer for all of them, reused from batch to batch.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    ends: Vec<usize>,
}

impl Batch {
    /// Takes one record; the ring callback's result: negative stops this poll (the record is
    /// consumed either way) once the batch is full.
    fn push(&mut self, data: &[u8]) -> i32 {
        self.bytes.extend_from_slice(data);
        self.ends.push(self.bytes.len());
        if self.full() {
            -libc::EAGAIN
        } else {
            0
        }
    }

    fn full(&self) -> bool {
        self.ends.len() >= BATCH_RECORDS
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn records(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.bytes[a..b])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// The start-up settings with what `ebpfh set` changed on top (it outlives a restart); a saved
/// value this version no longer takes is skipped with a warning.
fn with_saved_settings(store: &Store, flags: &Settings) -> Settings {
    let mut settings = flags.clone();
    let saved = store.load_settings().unwrap_or_else(|e| {
        log::warn!("cannot read the settings `ebpfh set` saved: {e}; starting with the flags");
        Vec::new()
    });
    for (name, value) in saved {
        match crate::control::protocol::apply_setting(&mut settings, &name, &value) {
            Ok(()) => log::info!("{name} = {value}, as `ebpfh set` left it"),
            Err(e) => log::warn!("ignoring the saved setting {name}: {e}"),
        }
    }
    settings
}

/// What goes to stderr of the anomaly and incident lines. Every incident line does, and the
/// first [`defaults::ANOMALY_LINES`] anomaly lines of each incident: with `--anomaly-lines`
/// raised, the event log keeps every anomaly, but stderr (a terminal or the journal, written
/// line by line) need not repeat them all; their incident line counts them there.
#[derive(Default)]
struct StderrLines {
    /// Anomaly lines of each task's open incident so far.
    anomalies: HashMap<u32, u64>,
}

impl StderrLines {
    fn log(&mut self, rec: &Record) {
        match rec {
            Record::Anomaly { process, .. } => {
                let n = self.anomalies.entry(process.tid).or_default();
                *n += 1;
                if *n <= crate::settings::defaults::ANOMALY_LINES {
                    log_line(rec);
                } else if *n == crate::settings::defaults::ANOMALY_LINES + 1 {
                    log::warn!(
                        "more anomalies in pid {} ({}) go to the event log only; its incident line counts them",
                        process.pid,
                        process.exe
                    );
                }
            }
            Record::Incident { .. } => {
                self.ended(rec);
                log_line(rec);
            }
            _ => {}
        }
    }

    /// An incident line, written or not: its task's next anomaly begins a new count.
    fn ended(&mut self, rec: &Record) {
        if let Record::Incident { process, .. } = rec {
            self.anomalies.remove(&process.tid);
        }
    }
}

/// The stderr line for an anomaly or incident line about to be written.
fn log_line(rec: &Record) {
    match rec {
        Record::Anomaly {
            process,
            syscall,
            misses,
            lfc,
            ..
        } => log::warn!(
            "anomaly: {} in pid {} ({}), {misses} misses, LFC {lfc}",
            syscall.name,
            process.pid,
            process.exe
        ),
        Record::Incident {
            process,
            anomalous_calls,
            max_lfc,
            reason,
            ..
        } => log::warn!(
            "incident: {anomalous_calls} anomalous calls in pid {} ({}), max LFC {max_lfc}, ended: {reason}",
            process.pid,
            process.exe
        ),
        _ => {}
    }
}
