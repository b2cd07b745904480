//! A profile inside the model: counters, state bits and the two tables in hot-path layout.

use crate::event::Counters;
use crate::profile::{Life, Profile, ProfileKey, NOVELTY_ONE, PS_FROZEN, PS_KEPT, PS_TAINTED};

use super::table::Rows;
use super::{Settings, FREEZE_MIN_CALLS};
use crate::profile::PS_NORMAL;

/// What `struct profile` holds, plus the executable's path so [`Profile`] round-trips.
#[derive(Clone, Debug)]
pub(super) struct ModelProfile {
    pub key: ProfileKey,
    pub exe: String,
    pub state: u32,
    pub count: u64,
    pub train_count: u64,
    pub last_mod_count: u64,
    pub sequences: u64,
    pub anomalies: u64,
    pub normal_time: u64,
    pub life: Life,
    pub train: Rows,
    pub test: Rows,
}

impl ModelProfile {
    /// A profile as `profile_for_file` creates it: zeroed, training, normal_time = now + wait.
    pub fn new(key: ProfileKey, settings: &Settings, now: u64) -> Self {
        ModelProfile {
            key,
            exe: String::new(),
            state: 0,
            count: 0,
            train_count: 0,
            last_mod_count: 0,
            sequences: 0,
            anomalies: 0,
            normal_time: now.wrapping_add(settings.normal_wait_ns),
            life: Life::fresh(now),
            train: Rows::default(),
            test: Rows::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        Counters {
            count: self.count,
            train_count: self.train_count,
            last_mod_count: self.last_mod_count,
            sequences: self.sequences,
            anomalies: self.anomalies,
        }
    }

    /// `maybe_freeze`, after a clean training call: freeze once the calls since the last new pair
    /// outweigh the calls before it by normal_factor / normal_factor_den (with pH's 128/32, when
    /// last_mod_count > 3/4 train_count). u64 arithmetic wraps as in C.
    pub fn maybe_freeze(&mut self, settings: &Settings, now: u64) {
        let train = self.train_count;
        let normal = train.wrapping_sub(self.last_mod_count);
        if normal > 0
            && train.wrapping_mul(u64::from(settings.normal_factor_den))
                > normal.wrapping_mul(u64::from(settings.normal_factor))
        {
            self.freeze(settings, now);
        }
    }

    /// `freeze`: the profile turns normal once normal_wait has passed.
    pub fn freeze(&mut self, settings: &Settings, now: u64) {
        self.normal_time = now.wrapping_add(settings.normal_wait_ns);
        self.state |= PS_FROZEN;
    }

    /// `maybe_freeze_quiet` (ebpfh lifecycle), after a clean call of a training profile: no new
    /// pair for normal_wait freezes it even if none of its runs ever ends (a daemon).
    pub fn maybe_freeze_quiet(&mut self, settings: &Settings, now: u64) {
        if now
            > self
                .life
                .last_new_time
                .wrapping_add(settings.normal_wait_ns)
            && self.count >= FREEZE_MIN_CALLS
        {
            self.freeze(settings, now);
        }
    }

    /// `drop_pending` (ebpfh lifecycle): the training data goes back to the testing data.
    pub fn drop_pending(&mut self) {
        if self.life.pending != 0 {
            self.train.copy_from(&self.test);
        }
        self.life.pending = 0;
        self.life.repeat_runs = 0;
    }

    /// `accept_pending` (ebpfh lifecycle): the training data is ORed into the testing data;
    /// returns how many pair sets were pending.
    pub fn accept_pending(&mut self) -> u32 {
        let n = self.life.pending;
        self.test.merge_from(&self.train);
        self.life.pending = 0;
        self.life.repeat_runs = 0;
        self.state &= !PS_TAINTED;
        n
    }

    /// `stop_normal_ebpfh`: back to training from the testing data, with novelty starting over.
    pub fn stop_normal_ebpfh(&mut self) {
        self.drop_pending();
        self.life.novelty = NOVELTY_ONE;
        self.life.budget = 0;
        self.life.budget_time = 0;
        self.state &= !(PS_NORMAL | PS_TAINTED);
    }

    /// `promote`, the part of start_normal every caller shares: the training data becomes the
    /// testing data and counting starts over. Training data and `sequences` stay (pH).
    pub fn promote(&mut self) {
        self.test.copy_from(&self.train);
        self.anomalies = 0;
        self.train_count = 0;
        self.last_mod_count = 0;
        self.life.budget = 0;
        self.life.budget_time = 0;
        self.life.pending = 0;
        self.life.repeat_runs = 0;
        self.state = (self.state & !(PS_FROZEN | PS_TAINTED)) | PS_NORMAL;
    }

    /// `reset_training`: forget the training data (tolerize limit, sensitize). The kernel skips
    /// the table pass when `sequences` is 0, trusting that nothing was learned since the last
    /// reset; mirrored so a profile loaded with pairs but `sequences == 0` behaves alike.
    pub fn reset_training(&mut self) {
        if self.sequences != 0 {
            self.train.zero();
        }
        self.train_count = 0;
        self.last_mod_count = 0;
        self.sequences = 0;
        self.anomalies = 0;
    }

    /// The `reset` command: forget everything and start training again.
    pub fn reset(&mut self, settings: &Settings, now: u64) {
        self.train.zero();
        self.test.zero();
        self.count = 0;
        self.train_count = 0;
        self.last_mod_count = 0;
        self.sequences = 0;
        self.anomalies = 0;
        self.normal_time = now.wrapping_add(settings.normal_wait_ns);
        self.life = Life::fresh(now);
        self.state = 0;
    }

    pub fn to_profile(&self) -> Profile {
        Profile {
            key: self.key,
            exe: self.exe.clone(),
            identity: None,
            script: String::new(),
            owner: 0,
            state: self.state,
            count: self.count,
            train_count: self.train_count,
            last_mod_count: self.last_mod_count,
            sequences: self.sequences,
            anomalies: self.anomalies,
            normal_time: self.normal_time,
            life: self.life,
            train: self.train.to_table(),
            test: self.test.to_table(),
        }
    }

    /// From a saved or kernel-read profile. Unknown state bits are dropped, as the loader drops
    /// PROMOTING: no copy can be half done here.
    pub fn from_profile(p: &Profile) -> Self {
        ModelProfile {
            key: p.key,
            exe: p.exe.clone(),
            state: p.state & PS_KEPT,
            count: p.count,
            train_count: p.train_count,
            last_mod_count: p.last_mod_count,
            sequences: p.sequences,
            anomalies: p.anomalies,
            normal_time: p.normal_time,
            life: p.life,
            train: Rows::from_table(&p.train),
            test: Rows::from_table(&p.test),
        }
    }
}
