//! The pH model: the kernel program's algorithm in plain Rust, its executable specification.
//!
//! [`Model`] holds profiles and traced tasks and has one method per kernel hook (`exec`, `fork`,
//! `exit`, `signal_handler`, `syscall`) and per operator command. Each mirrors
//! `bpf/ebpfh.bpf.c` step for step, in the same order, so replaying a trace through the model
//! yields the events and profiles the kernel would produce. There is no I/O and no clock: every
//! time is passed in (CLOCK_TAI nanoseconds, like the kernel's `now_tai()`).
//!
//! Not modelled: capacities (the profile table and the row pool never fill here; the kernel
//! counts those losses), lost events, the monitor's own tasks, races between CPUs, the
//! responses (so [`Event::Delay`] and [`Event::ExecveDenied`] come only from the kernel), and
//! the per-event header (pid, uid, comm, exact time) that only the kernel knows.

mod locality;
mod profile;
mod table;
mod task;
mod window;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use crate::event::{Counters, Event, StopReason};
pub use locality::{LocalityFrame, LOCALITY};
pub use task::Task;
pub use window::{Frame, Prev, DISTANCES, RING, SIGSTACK, WINDOW};

use crate::profile::{Profile, ProfileKey, NOVELTY_ONE, PS_FROZEN, PS_NORMAL, PS_TAINTED};
pub use crate::settings::Lifecycle;
use crate::syscalls;
use profile::ModelProfile;
#[cfg(test)]
use table::Rows;

/// rt_sigreturn's number on the architecture the kernel program is built for.
#[cfg(target_arch = "aarch64")]
pub const NR_RT_SIGRETURN: i64 = 139;
/// rt_sigreturn's number on the architecture the kernel program is built for.
#[cfg(not(target_arch = "aarch64"))]
pub const NR_RT_SIGRETURN: i64 = 15;

/// `NOVELTY_SHIFT`: each ended run weighs 1/8 in the novelty EWMA (`bpf/ebpfh.h`).
pub const NOVELTY_SHIFT: u32 = 3;
/// `NOVELTY_FREEZE`: a training profile freezes at a run end when novelty is below 1/16.
pub const NOVELTY_FREEZE: u32 = NOVELTY_ONE / 16;
/// `NOVELTY_THAW`: a frozen profile goes back to training at a run end above 1/4.
pub const NOVELTY_THAW: u32 = NOVELTY_ONE / 4;
/// `FREEZE_MIN_CALLS`: calls a profile must have made before it may freeze.
pub const FREEZE_MIN_CALLS: u64 = 1024;
/// `ACCEPT_RUNS`: clean runs after which an untainted normal profile's pending pairs are accepted.
pub const ACCEPT_RUNS: u32 = 8;

/// The tunables `struct settings` carries, with pH's defaults (and ebpfh's lifecycle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long a profile stays frozen before it turns normal, in nanoseconds.
    pub normal_wait_ns: u64,
    pub normal_factor: u32,
    pub normal_factor_den: u32,
    /// Anomalous calls a normal profile tolerates; the one after `anomaly_limit + 1` stops it.
    pub anomaly_limit: u32,
    /// A task's LFC above this resets its profile's training data.
    pub tolerize_limit: u32,
    /// Emit [`Event::NewSequence`] for every call that taught the profile a pair.
    pub log_sequences: bool,
    /// Off: calls are neither learned nor tested, but rt_sigreturn still closes a handler
    /// frame (as in `sys_enter`); exec, fork and signal hooks keep running.
    pub monitoring: bool,
    pub lifecycle: Lifecycle,
}

impl Settings {
    fn ph(&self) -> bool {
        self.lifecycle == Lifecycle::Ph
    }

    /// `minor_lfc`: a normal profile's run whose LFC stayed at or below this is clean.
    pub fn minor_lfc(&self) -> u32 {
        self.tolerize_limit / 2
    }
}

impl Default for Settings {
    /// The monitor's defaults, converted as the monitor converts them.
    fn default() -> Self {
        Settings::from(&crate::settings::Settings::default())
    }
}

impl From<&crate::settings::Settings> for Settings {
    /// The values the monitor writes into the kernel (same saturation for huge waits).
    fn from(s: &crate::settings::Settings) -> Self {
        Settings {
            normal_wait_ns: crate::settings::wait_ns(s.normal_wait),
            normal_factor: s.normal_factor,
            normal_factor_den: s.normal_factor_den,
            anomaly_limit: s.anomaly_limit,
            tolerize_limit: s.tolerize_limit,
            log_sequences: s.log_sequences,
            monitoring: s.monitoring,
            lifecycle: s.lifecycle,
        }
    }
}

/// Why an operator command was refused (the kernel's `-ENOENT` and `-ENODATA`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no profile '{0}'")]
    NoProfile(ProfileKey),
    #[error("profile '{0}' has no training data yet, so it cannot be normalized")]
    Untrained(ProfileKey),
    #[error("profile '{0}' is not normal, so nothing of it is pending")]
    NotNormal(ProfileKey),
    #[error("profile '{0}' has no pending pairs to accept")]
    NothingPending(ProfileKey),
}

/// Profiles and traced tasks, driven by the same hooks as the kernel program.
#[derive(Clone, Debug, Default)]
pub struct Model {
    settings: Settings,
    /// Like the kernel's ARRAY of slots: a profile keeps its index forever.
    profiles: Vec<ModelProfile>,
    index: HashMap<ProfileKey, usize>,
    // Looked up on every call: foldhash, as for the monitor's per-event maps.
    tasks: foldhash::HashMap<u32, Task>,
}

impl Model {
    pub fn new(settings: Settings) -> Self {
        Model {
            settings,
            ..Default::default()
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The monitor may change settings while tasks run; so may a replay.
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    // ---- hooks ------------------------------------------------------------------------------

    /// `sched_process_exec`: task `tid` now runs the executable `key`. Finds or creates its
    /// profile (a new one waits normal_wait from `now`) and gives the task fresh state.
    pub fn exec(&mut self, tid: u32, key: ProfileKey, now: u64) -> Vec<Event> {
        let mut events = Vec::new();
        // The old image's run ends here.
        if let Some(old) = self.tasks.get(&tid) {
            let p = &mut self.profiles[old.slot];
            run_end(&self.settings, tid, old, p, RunEnd::Exec, now, &mut events);
        }
        let slot = match self.index.get(&key) {
            Some(&slot) => slot,
            None => {
                let slot = self.profiles.len();
                self.profiles
                    .push(ModelProfile::new(key, &self.settings, now));
                self.index.insert(key, slot);
                events.push(Event::ProfileCreated { tid, key });
                slot
            }
        };
        self.tasks.insert(tid, Task::fresh(key, slot));
        events
    }

    /// `sched_process_fork`: `child` (process or thread) takes `parent`'s profile and current
    /// window. Nothing happens if the parent is not traced.
    pub fn fork(&mut self, parent: u32, child: u32) {
        if let Some(p) = self.tasks.get(&parent) {
            let c = Task::forked_from(p);
            self.tasks.insert(child, c);
        }
    }

    /// `sched_process_exit` at `now`: the task's run ends, and its state goes with it.
    pub fn exit(&mut self, tid: u32, now: u64) -> Vec<Event> {
        let mut events = Vec::new();
        self.exit_into(tid, now, &mut events);
        events
    }

    /// [`Model::exit`] appending to a caller's buffer.
    pub fn exit_into(&mut self, tid: u32, now: u64, out: &mut Vec<Event>) {
        if let Some(t) = self.tasks.remove(&tid) {
            let p = &mut self.profiles[t.slot];
            run_end(&self.settings, tid, &t, p, RunEnd::Exit, now, out);
        }
    }

    /// `signal_deliver` for a signal that runs a user handler (the caller filters SIG_DFL and
    /// SIG_IGN, as the kernel program does before anything else).
    pub fn signal_handler(&mut self, tid: u32) {
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.push_signal();
        }
    }

    /// A handler frame closed by a call that was not a recorded native rt_sigreturn (32-bit
    /// sigreturns, x32, or any while monitoring was paused): the trace's `TR_SIGRETURN`.
    pub fn sigreturn(&mut self, tid: u32) {
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.pop_signal();
        }
    }

    /// `sys_enter`: task `tid` makes system call `raw_id` at time `now`.
    pub fn syscall(&mut self, tid: u32, raw_id: i64, now: u64) -> Vec<Event> {
        let mut events = Vec::new();
        self.syscall_into(tid, raw_id, now, &mut events);
        events
    }

    /// [`Model::syscall`] appending to a caller's buffer, for replays that must not allocate.
    #[inline]
    pub fn syscall_into(&mut self, tid: u32, raw_id: i64, now: u64, out: &mut Vec<Event>) {
        let Some(task) = self.tasks.get_mut(&tid) else {
            return;
        };
        if !self.settings.monitoring {
            // Paused: nothing is learned or tested, but handler frames still close.
            if raw_id == NR_RT_SIGRETURN {
                task.pop_signal();
            }
            return;
        }
        let p = &mut self.profiles[task.slot];
        on_syscall(
            &self.settings,
            tid,
            task,
            p,
            syscalls::symbol(raw_id),
            now,
            out,
        );
        // rt_sigreturn is the handler's last call, recorded in its frame; then the frame goes.
        if raw_id == NR_RT_SIGRETURN {
            task.pop_signal();
        }
    }

    // ---- operator commands (the kernel's `command` program) ---------------------------------

    /// Start normal monitoring now: the training data becomes the testing data. Unlike the
    /// automatic promotion, no frozen state is needed and no task's locality frame is reset.
    /// Refused for a profile that never learned a pair (`sequences == 0`, as the kernel checks),
    /// whose empty testing data would flag every call (docs/algorithm.md, "Normalizing an
    /// untrained profile").
    pub fn normalize(&mut self, key: ProfileKey) -> Result<(), CommandError> {
        let p = self.get_mut(key)?;
        if p.sequences == 0 {
            return Err(CommandError::Untrained(key));
        }
        p.promote();
        Ok(())
    }

    /// Forget the training data (what the tolerize limit does automatically); normal status
    /// and the testing data stay.
    /// Under the ebpfh lifecycle a normal profile's training data stays a superset of its
    /// testing data, so there sensitize drops only the pending pairs.
    pub fn sensitize(&mut self, key: ProfileKey) -> Result<(), CommandError> {
        let ph = self.settings.ph();
        let p = self.get_mut(key)?;
        if !ph && p.state & PS_NORMAL != 0 {
            p.drop_pending();
            return Ok(());
        }
        p.reset_training();
        if !ph {
            p.life.novelty = NOVELTY_ONE;
            p.life.pending = 0;
            p.life.repeat_runs = 0;
        }
        Ok(())
    }

    /// Accept a normal profile's pending pairs: they become testing data and the profile is
    /// untainted. Refused for a profile that is not normal, or has nothing pending and no taint.
    pub fn accept(&mut self, key: ProfileKey) -> Result<(), CommandError> {
        let p = self.get_mut(key)?;
        if p.state & PS_NORMAL == 0 {
            return Err(CommandError::NotNormal(key));
        }
        if p.life.pending == 0 && p.state & PS_TAINTED == 0 {
            return Err(CommandError::NothingPending(key));
        }
        p.accept_pending();
        Ok(())
    }

    /// Accept what was flagged: stop normal monitoring, keep the training data (and drop a
    /// taint, which only a normal profile carries).
    pub fn tolerize(&mut self, key: ProfileKey) -> Result<(), CommandError> {
        self.get_mut(key)?.state &= !(PS_NORMAL | PS_TAINTED);
        Ok(())
    }

    /// Forget the profile's data: both tables and all counters; training again, with
    /// normal_time = now + normal_wait.
    pub fn reset(&mut self, key: ProfileKey, now: u64) -> Result<(), CommandError> {
        let settings = self.settings.clone();
        self.get_mut(key)?.reset(&settings, now);
        Ok(())
    }

    /// Freeze now: the profile turns normal once normal_wait has passed without a new pair.
    pub fn freeze(&mut self, key: ProfileKey, now: u64) -> Result<(), CommandError> {
        let settings = self.settings.clone();
        self.get_mut(key)?.freeze(&settings, now);
        Ok(())
    }

    fn get_mut(&mut self, key: ProfileKey) -> Result<&mut ModelProfile, CommandError> {
        match self.index.get(&key) {
            Some(&slot) => Ok(&mut self.profiles[slot]),
            None => Err(CommandError::NoProfile(key)),
        }
    }

    // ---- profiles and tasks at the edges ------------------------------------------------------

    /// A copy of one profile in the exchange format (tables hold only rows with pairs, as the
    /// kernel reader returns them).
    pub fn profile(&self, key: ProfileKey) -> Option<Profile> {
        self.index.get(&key).map(|&s| self.profiles[s].to_profile())
    }

    /// Adds a saved profile, or replaces the one with the same key in place (its tasks stay on
    /// it, as when the monitor rewrites a kernel slot).
    pub fn insert_profile(&mut self, profile: &Profile) {
        let p = ModelProfile::from_profile(profile);
        match self.index.get(&profile.key) {
            Some(&slot) => self.profiles[slot] = p,
            None => {
                self.index.insert(profile.key, self.profiles.len());
                self.profiles.push(p);
            }
        }
    }

    /// Keys of every profile, in creation order.
    pub fn keys(&self) -> impl Iterator<Item = ProfileKey> + '_ {
        self.profiles.iter().map(|p| p.key)
    }

    /// State bits of one profile (cheaper than [`Model::profile`]).
    pub fn state(&self, key: ProfileKey) -> Option<u32> {
        self.index.get(&key).map(|&s| self.profiles[s].state)
    }

    /// Counters of one profile (cheaper than [`Model::profile`]).
    pub fn counters(&self, key: ProfileKey) -> Option<Counters> {
        self.index.get(&key).map(|&s| self.profiles[s].counters())
    }

    pub fn task(&self, tid: u32) -> Option<&Task> {
        self.tasks.get(&tid)
    }

    /// Every traced task, in no particular order.
    pub fn tasks(&self) -> impl Iterator<Item = (u32, &Task)> + '_ {
        self.tasks.iter().map(|(&tid, t)| (tid, t))
    }
}

/// `on_syscall`: one call of a traced task, every step in the kernel's order.
#[inline]
fn on_syscall(
    s: &Settings,
    tid: u32,
    ts: &mut Task,
    p: &mut ModelProfile,
    c: u16,
    now: u64,
    out: &mut Vec<Event>,
) {
    let key = p.key;
    let f = &mut ts.frames[ts.depth as usize & (SIGSTACK - 1)];
    let prev = f.push(c);
    p.count = p.count.wrapping_add(1);
    ts.count = ts.count.wrapping_add(1);

    // Train: test against the training data, learn what it lacks. Under pH a new pair
    // unfreezes; under ebpfh a frozen profile tolerates rare novelty (the run's end decides)
    // and what a normal profile learns is pending.
    let mut miss = p.train.misses(c, &prev);
    // ebpfh: a run that had anomalies teaches a profile that is not normal nothing, so it cannot
    // re-freeze on what made it stop.
    if miss != 0 && ts.run_lfc != 0 && !s.ph() && p.state & PS_NORMAL == 0 {
        miss = 0;
    }
    p.train_count = p.train_count.wrapping_add(1);
    if miss != 0 {
        if s.ph() {
            p.state &= !PS_FROZEN;
        } else {
            ts.run_new = true;
            p.life.last_new_time = now;
            if p.state & PS_NORMAL != 0 {
                p.life.pending = p.life.pending.wrapping_add(1);
            }
        }
        p.train.learn(c, &prev, miss);
        p.sequences = p.sequences.wrapping_add(1);
        p.last_mod_count = 0;
        if s.log_sequences {
            out.push(Event::NewSequence {
                tid,
                key,
                lfc: ts.lf.lfc(),
                window: f.window(),
                counters: p.counters(),
            });
        }
    } else {
        p.last_mod_count = p.last_mod_count.wrapping_add(1);
        if s.ph() {
            if p.state & PS_FROZEN == 0 {
                // Also while normal: pH lets a normal profile re-freeze and later re-normalise.
                p.maybe_freeze(s, now);
            }
        } else if p.state & (PS_FROZEN | PS_NORMAL) == 0 {
            p.maybe_freeze_quiet(s, now);
        }
    }

    // Promote a frozen profile whose wait is over (normal or not: pH has no such guard).
    if p.state & PS_FROZEN != 0 && now > p.normal_time {
        out.push(Event::NormalStarted {
            tid,
            key,
            lfc: ts.lf.lfc(),
            before: p.counters(),
        });
        p.promote();
        ts.lf.reset();
    }

    // Detect against the testing data.
    let mut anomalous = 0;
    let mut over_limit = false;
    if p.state & PS_NORMAL != 0 {
        anomalous = p.test.misses(c, &prev).count_ones();
        if anomalous != 0 {
            over_limit = over_budget(s, ts.run_lfc, p, now);
        }
        if over_limit {
            if s.ph() {
                p.state &= !PS_NORMAL;
            } else {
                p.stop_normal_ebpfh();
            }
            ts.lf.reset();
        }
    }
    ts.lf.feed(anomalous != 0);
    if anomalous != 0 {
        ts.run_lfc = ts.run_lfc.max(ts.lf.lfc());
        p.anomalies = p.anomalies.wrapping_add(1);
        out.push(Event::Anomaly {
            tid,
            key,
            window: f.window(),
            misses: anomalous as u16,
            new_pairs: miss.count_ones() as u16,
            unknown: anomalous as usize == DISTANCES && p.test.lacks(c),
            lfc: ts.lf.lfc(),
            profile_anomalies: p.anomalies,
            task_count: ts.count,
        });
    }
    if over_limit {
        out.push(Event::NormalStopped {
            tid,
            key,
            lfc: ts.lf.lfc(),
            counters: p.counters(),
            reason: StopReason::AnomalyLimit,
        });
    }

    // Tolerize limit: pH resets the training data on every call above it; we report once per
    // crossing (docs/algorithm.md, "Tolerize event on every call"). The ebpfh lifecycle acts
    // once per crossing too: a normal profile's pending pairs go and it is tainted.
    if ts.lf.lfc() > s.tolerize_limit {
        if s.ph() {
            p.reset_training();
        }
        if !ts.lf.tolerized {
            ts.lf.tolerized = true;
            if !s.ph() && p.state & PS_NORMAL != 0 {
                p.drop_pending();
                p.state |= PS_TAINTED;
            }
            out.push(Event::TolerizeLimit {
                tid,
                key,
                lfc: ts.lf.lfc(),
                counters: p.counters(),
            });
        }
    } else {
        ts.lf.tolerized = false;
    }
}

/// `over_budget`, on an anomalous call of a normal profile: does normal monitoring stop? pH: the
/// profile's anomalous calls before this one exceed anomaly_limit (so it trips on limit + 2).
/// ebpfh: the run's first anomaly charges one unit to a budget that starts over every
/// normal_wait; more than anomaly_limit units in one window stop it.
fn over_budget(s: &Settings, run_lfc: u32, p: &mut ModelProfile, now: u64) -> bool {
    if s.ph() {
        return p.anomalies > u64::from(s.anomaly_limit);
    }
    if run_lfc != 0 {
        return false;
    }
    if now > p.life.budget_time.wrapping_add(s.normal_wait_ns) {
        p.life.budget_time = now;
        p.life.budget = 0;
    }
    p.life.budget = p.life.budget.wrapping_add(1);
    p.life.budget > s.anomaly_limit
}

/// How a run ended: the task exited, or exec'd another image (`run_end`'s `by_exec`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    Exit,
    Exec,
}

/// `run_end` (ebpfh lifecycle): task `tid`'s run of `p` ended at `now` (`how`). Updates the
/// novelty EWMA, then freezes a converged training profile, thaws a frozen one whose novelty
/// rose, and for a normal one taints it (a burst above the minor LFC in this run) or counts a run
/// that showed pending pairs again (anomalous, minor, nothing new learned), accepting the pending
/// pairs after [`ACCEPT_RUNS`] of them. A launch stub (a run that began at a fork, ends at an
/// exec and taught nothing) is no evidence about the profile's own work: it can only taint
/// (docs/lifecycle.md, "Runs").
fn run_end(
    s: &Settings,
    tid: u32,
    ts: &Task,
    p: &mut ModelProfile,
    how: RunEnd,
    now: u64,
    out: &mut Vec<Event>,
) {
    if s.ph() || !s.monitoring || ts.count == 0 {
        return;
    }
    let state = p.state;
    if how == RunEnd::Exec && ts.run_forked && !ts.run_new {
        if state & PS_NORMAL != 0 && ts.run_lfc > s.minor_lfc() {
            p.state |= PS_TAINTED;
            p.life.repeat_runs = 0;
        }
        return;
    }
    p.life.runs = p.life.runs.wrapping_add(1);
    let mut novelty = p.life.novelty;
    novelty -= novelty >> NOVELTY_SHIFT;
    if ts.run_new {
        novelty = novelty.wrapping_add(NOVELTY_ONE >> NOVELTY_SHIFT);
    }
    p.life.novelty = novelty;
    if state & PS_NORMAL != 0 {
        if ts.run_lfc > s.minor_lfc() {
            p.state |= PS_TAINTED;
            p.life.repeat_runs = 0;
        } else if p.life.pending != 0 && ts.run_lfc != 0 && !ts.run_new && state & PS_TAINTED == 0 {
            p.life.repeat_runs = p.life.repeat_runs.wrapping_add(1);
            if p.life.repeat_runs >= ACCEPT_RUNS {
                let pending = p.accept_pending();
                out.push(Event::PendingAccepted {
                    tid,
                    key: p.key,
                    lfc: ts.lf.lfc(),
                    pending,
                    counters: p.counters(),
                });
            }
        }
    } else if state & PS_FROZEN != 0 {
        // Only a novel run thaws: a clean one never undoes a quiet freeze.
        if ts.run_new && novelty > NOVELTY_THAW {
            p.state &= !PS_FROZEN;
        }
    } else if novelty < NOVELTY_FREEZE && p.count >= FREEZE_MIN_CALLS {
        p.freeze(s, now);
    }
}
