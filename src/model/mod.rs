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
use std::hash::{BuildHasherDefault, Hasher};

pub use crate::event::{Counters, Event, StopReason};
pub use locality::{LocalityFrame, LOCALITY};
pub use task::Task;
pub use window::{Frame, Prev, DISTANCES, RING, SIGSTACK, WINDOW};

use crate::profile::{Profile, ProfileKey, PS_FROZEN, PS_NORMAL};
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

/// The tunables `struct settings` carries, with pH's defaults.
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
}

/// Hashes a tid with one multiplication: tids are small distinct integers, not attacker-chosen
/// keys, and the hot path looks one up per call.
#[derive(Default)]
struct TidHasher(u64);

impl Hasher for TidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Profiles and traced tasks, driven by the same hooks as the kernel program.
#[derive(Clone, Debug, Default)]
pub struct Model {
    settings: Settings,
    /// Like the kernel's ARRAY of slots: a profile keeps its index forever.
    profiles: Vec<ModelProfile>,
    index: HashMap<ProfileKey, usize>,
    tasks: HashMap<u32, Task, BuildHasherDefault<TidHasher>>,
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

    /// `sched_process_exit`: the task's state goes with it.
    pub fn exit(&mut self, tid: u32) {
        self.tasks.remove(&tid);
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
    /// whose empty testing data would flag every call (ebpH bug B17).
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
    pub fn sensitize(&mut self, key: ProfileKey) -> Result<(), CommandError> {
        self.get_mut(key)?.reset_training();
        Ok(())
    }

    /// Accept what was flagged: stop normal monitoring, keep the training data.
    pub fn tolerize(&mut self, key: ProfileKey) -> Result<(), CommandError> {
        self.get_mut(key)?.state &= !PS_NORMAL;
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
        let wait = self.settings.normal_wait_ns;
        let p = self.get_mut(key)?;
        p.normal_time = now.wrapping_add(wait);
        p.state |= PS_FROZEN;
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

    // Train: test against the training data, learn what it lacks. A new pair unfreezes.
    let miss = p.train.misses(c, &prev);
    p.train_count = p.train_count.wrapping_add(1);
    if miss != 0 {
        p.state &= !PS_FROZEN;
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
        if p.state & PS_FROZEN == 0 {
            // Also while normal: pH lets a normal profile re-freeze and later re-normalise.
            p.maybe_freeze(s, now);
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
        // The count before this call's increment: the limit trips on anomaly limit + 2.
        if anomalous != 0 && p.anomalies > u64::from(s.anomaly_limit) {
            over_limit = true;
            p.state &= !PS_NORMAL;
            ts.lf.reset();
        }
    }
    ts.lf.feed(anomalous != 0);
    if anomalous != 0 {
        p.anomalies = p.anomalies.wrapping_add(1);
        out.push(Event::Anomaly {
            tid,
            key,
            window: f.window(),
            misses: anomalous as u16,
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
    // crossing (ebpH bug B3).
    if ts.lf.lfc() > s.tolerize_limit {
        p.reset_training();
        if !ts.lf.tolerized {
            ts.lf.tolerized = true;
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
