//! A profile as userspace holds it: identity, counters, state and two sparse lookahead tables.
//!
//! The same type is read out of the kernel, saved to and loaded from disk, and (later) produced by
//! the pure model, so all three can be compared directly.

use std::collections::BTreeMap;
use std::fmt;

use crate::columns::{self, KernelRow, NCOLS};
use crate::syscalls::NSYMBOLS;

/// Profile state bits, as in `bpf/ebpfh.h` (pH keeps frozen and normal independent).
pub const PS_FROZEN: u32 = 1;
pub const PS_NORMAL: u32 = 2;
/// ebpfh lifecycle: a run with a real burst since the last accept; pending pairs wait for the
/// operator.
pub const PS_TAINTED: u32 = 8;
/// The state bits a profile keeps outside the kernel (PROMOTING, 4, exists only mid-copy).
pub const PS_KEPT: u32 = PS_FROZEN | PS_NORMAL | PS_TAINTED;

/// `NOVELTY_ONE` in `bpf/ebpfh.h`: a novelty of every run.
pub const NOVELTY_ONE: u32 = 1 << 16;

/// The ebpfh lifecycle's per-profile bookkeeping (`struct profile`'s second block; see
/// docs/lifecycle.md). All zero and unused under pH's lifecycle, except as set at creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Life {
    /// EWMA over ended runs of "this run learned a new pair", [`NOVELTY_ONE`] = every run.
    pub novelty: u32,
    /// Runs ended (a task exited or exec'd another image), launch stubs not counted.
    pub runs: u64,
    /// CLOCK_TAI ns of the latest new pair (or of creation).
    pub last_new_time: u64,
    /// Start of the current anomaly-budget window.
    pub budget_time: u64,
    /// Anomalous runs charged in that window.
    pub budget: u32,
    /// Pair sets learned while normal that are not testing data yet.
    pub pending: u32,
    /// Clean runs since the pending pairs began.
    pub repeat_runs: u32,
}

impl Life {
    /// A new or reset profile at `now`: nothing seen yet.
    pub fn fresh(now: u64) -> Self {
        Life {
            novelty: NOVELTY_ONE,
            last_new_time: now,
            ..Life::default()
        }
    }
}

/// Size of one `struct profile` slot in the kernel: counters plus two 16-bit row indexes.
pub const KERNEL_SLOT_BYTES: usize = 120 + 2 * 2 * NCOLS;

/// A profile's identity: the executable's raw `s_dev` and inode number, both full width, and for
/// an interpreter running a script file, the kernel's hash of the script's path (0 = none; see
/// `script_of` in `bpf/ebpfh.bpf.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ProfileKey {
    /// Device as the kernel encodes it (`MAJOR << 20 | MINOR`).
    pub kdev: u64,
    pub ino: u64,
    pub script: u64,
}

impl ProfileKey {
    /// The key of an executable file itself (no script).
    pub const fn file(kdev: u64, ino: u64) -> Self {
        ProfileKey {
            kdev,
            ino,
            script: 0,
        }
    }

    /// The same executable with a script (0 = the executable itself).
    pub fn with_script(self, script: u64) -> Self {
        ProfileKey { script, ..self }
    }

    /// Whether this is an interpreter's profile for one script.
    pub fn is_script(&self) -> bool {
        self.script != 0
    }

    /// The key of a file without a name (memfd, O_TMPFILE, deleted) that `uid` ran, named
    /// `name_hash` (`anon_key` in `bpf/ebpfh.bpf.c`).
    pub const fn anonymous(uid: u32, name_hash: u64) -> Self {
        ProfileKey::file(ANON_DEV | uid as u64, name_hash)
    }

    /// For a file without a name, the uid that ran it.
    pub fn anonymous_uid(&self) -> Option<u32> {
        (self.kdev & ANON_DEV != 0).then_some(self.kdev as u32)
    }

    /// The device number as `stat(2)` reports it (`st_dev`).
    pub fn st_dev(&self) -> u64 {
        let major = self.kdev >> 20;
        let minor = self.kdev & 0xfffff;
        nix::sys::stat::makedev(major, minor)
    }

    /// Key of the file `stat` describes (inverse of [`ProfileKey::st_dev`]).
    pub fn from_stat(st_dev: u64, ino: u64) -> Self {
        let major = nix::sys::stat::major(st_dev);
        let minor = nix::sys::stat::minor(st_dev);
        ProfileKey::file((major << 20) | minor, ino)
    }
}

/// `ANON_DEV` of `bpf/ebpfh.h`: no real device number has this bit.
const ANON_DEV: u64 = 1 << 63;

/// Prints as `st_dev:ino`, the numbers `stat -c %d:%i` shows, a file without a name as
/// `anon:UID:NAMEHASH`, and a script profile with `:SCRIPT` after either (hashes in 16 hex
/// digits).
impl fmt::Display for ProfileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.anonymous_uid() {
            Some(uid) => write!(f, "anon:{uid}:{:016x}", self.ino)?,
            None => write!(f, "{}:{}", self.st_dev(), self.ino)?,
        }
        if self.is_script() {
            write!(f, ":{:016x}", self.script)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ProfileKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("anon:") {
            let mut parts = rest.split(':');
            let bad = || format!("'{s}' is not an anon:UID:HASH key");
            let uid = parts.next().and_then(|u| u.parse().ok()).ok_or_else(bad)?;
            let name = parts
                .next()
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(bad)?;
            let script = match parts.next() {
                Some(h) => u64::from_str_radix(h, 16)
                    .ok()
                    .filter(|&v| v != 0)
                    .ok_or_else(bad)?,
                None => 0,
            };
            if parts.next().is_some() {
                return Err(bad());
            }
            return Ok(ProfileKey::anonymous(uid, name).with_script(script));
        }
        let (dev, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}' is not a DEV:INODE key"))?;
        let (ino, script) = match rest.split_once(':') {
            Some((ino, script)) => (ino, Some(script)),
            None => (rest, None),
        };
        let dev = dev
            .parse()
            .map_err(|_| format!("'{dev}' is not a device number"))?;
        let ino = ino
            .parse()
            .map_err(|_| format!("'{ino}' is not an inode number"))?;
        let script = match script {
            Some(h) => u64::from_str_radix(h, 16)
                .ok()
                .filter(|&v| v != 0)
                .ok_or_else(|| format!("'{h}' is not a script hash (16 hex digits)"))?,
            None => 0,
        };
        Ok(ProfileKey::from_stat(dev, ino).with_script(script))
    }
}

/// Where a profile is in pH's state machine, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Training,
    Frozen,
    Normal,
}

impl State {
    pub fn from_bits(bits: u32) -> State {
        if bits & PS_NORMAL != 0 {
            State::Normal
        } else if bits & PS_FROZEN != 0 {
            State::Frozen
        } else {
            State::Training
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Training => "training",
            State::Frozen => "frozen",
            State::Normal => "normal",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row: for a current symbol, a byte per earlier symbol; bit `i-1` means distance `i`.
pub type Row = [u8; NSYMBOLS];

/// A sparse lookahead table: rows exist only for symbols that were ever the current call.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub rows: BTreeMap<u16, Box<Row>>,
}

impl Table {
    /// Flag byte for (current, previous).
    pub fn get(&self, current: u16, previous: u16) -> u8 {
        self.rows
            .get(&current)
            .map_or(0, |r| r[usize::from(previous)])
    }

    /// Number of lookahead pairs (set bits).
    pub fn pairs(&self) -> u64 {
        self.rows
            .values()
            .flat_map(|r| r.iter())
            .map(|b| u64::from(b.count_ones()))
            .sum()
    }

    /// Rows that carry at least one pair.
    pub fn nonempty_rows(&self) -> usize {
        self.rows
            .values()
            .filter(|r| r.iter().any(|&b| b != 0))
            .count()
    }

    /// Drop rows without any pair (a zeroed row means the same as a missing one).
    pub fn compact(&mut self) {
        self.rows.retain(|_, r| r.iter().any(|&b| b != 0));
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Table({} rows, {} pairs)", self.rows.len(), self.pairs())
    }
}

/// A whole profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub key: ProfileKey,
    /// Full path of the executable, as best known (empty if never learned).
    pub exe: String,
    /// What the profile is of on any host (see `src/identity.rs`), once userspace has hashed it.
    pub identity: Option<crate::identity::Identity>,
    /// A script profile's script, as best known (empty for other profiles).
    pub script: String,
    /// The uid whose exec created the profile (0 for root, and for profiles saved before ebpfh
    /// kept it); non-root uids have a quota (see `Capacity::uid_quota`).
    pub owner: u32,
    pub state: u32,
    pub count: u64,
    pub train_count: u64,
    pub last_mod_count: u64,
    pub sequences: u64,
    pub anomalies: u64,
    /// CLOCK_TAI nanoseconds after which a frozen profile becomes normal.
    pub normal_time: u64,
    pub life: Life,
    pub train: Table,
    pub test: Table,
}

impl Profile {
    pub fn state(&self) -> State {
        State::from_bits(self.state)
    }

    pub fn tainted(&self) -> bool {
        self.state & PS_TAINTED != 0
    }

    /// Before the ebpfh lifecycle runs a profile it did not write (saved under pH's lifecycle,
    /// or in format 1): a normal profile's training pairs that its testing data lacks were
    /// learned while normal, so they count as pending (one per previous-call entry), to be
    /// neither lost nor tested as normal before they are accepted.
    pub fn adopt_pending(&mut self) {
        if self.state & PS_NORMAL == 0 || self.life.pending != 0 {
            return;
        }
        let mut n = 0u32;
        for (c, row) in &self.train.rows {
            for (prev, &bits) in row.iter().enumerate() {
                if bits & !self.test.get(*c, prev as u16) != 0 {
                    n = n.saturating_add(1);
                }
            }
        }
        self.life.pending = n;
    }

    /// The rows the kernel is given for this profile, as `(column, row, is_test)` (see
    /// `src/columns.rs`): every training row, then every testing row, `None` for a testing row
    /// equal to the training row of its column, which the kernel stores once for both tables (as
    /// a promotion leaves them).
    pub fn kernel_rows(&self) -> Vec<(usize, Option<Box<KernelRow>>, bool)> {
        let train = columns::kernel_table(&self.train);
        let test = columns::kernel_table(&self.test);
        let mut out: Vec<_> = test
            .into_iter()
            .map(|(c, r)| {
                let shared = train.get(&c) == Some(&r);
                (usize::from(c), (!shared).then_some(r), true)
            })
            .collect();
        let mut rows: Vec<_> = train
            .into_iter()
            .map(|(c, r)| (usize::from(c), Some(r), false))
            .collect();
        rows.append(&mut out);
        rows
    }

    /// Kernel memory this profile occupies once loaded: its slot plus one [`NCOLS`]-byte row per
    /// row it is given (see [`Profile::kernel_rows`]).
    pub fn kernel_bytes(&self) -> usize {
        let rows = self
            .kernel_rows()
            .iter()
            .filter(|(_, r, _)| r.is_some())
            .count();
        KERNEL_SLOT_BYTES + rows * NCOLS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_memory_counts_a_testing_row_equal_to_training_once() {
        let mut p = Profile::default();
        let mut row = Box::new([0u8; NSYMBOLS]);
        row[7] = 0b101;
        p.train.rows.insert(3, row.clone());
        p.test.rows.insert(3, row.clone());
        assert_eq!(p.kernel_bytes(), KERNEL_SLOT_BYTES + NCOLS);
        // Training learned another pair after the promotion: two rows now.
        p.train.rows.get_mut(&3).unwrap()[8] = 1;
        assert_eq!(p.kernel_bytes(), KERNEL_SLOT_BYTES + 2 * NCOLS);
        // A testing row without a training row of its symbol is its own.
        p.test.rows.insert(4, row);
        assert_eq!(p.kernel_bytes(), KERNEL_SLOT_BYTES + 3 * NCOLS);
        assert!(p.kernel_rows().iter().all(|(_, r, _)| r.is_some()));
    }

    #[test]
    fn key_prints_like_stat_and_parses_back() {
        // /dev/vda1 style: major 254, minor 1; nvme: major 259, minor 3.
        let key = ProfileKey::file((259 << 20) | 3, 32381778);
        assert_eq!(key.st_dev(), 66307);
        assert_eq!(key.to_string(), "66307:32381778");
        assert_eq!("66307:32381778".parse::<ProfileKey>(), Ok(key));
        assert!("66307".parse::<ProfileKey>().is_err());
        assert!("a:1".parse::<ProfileKey>().is_err());
    }

    #[test]
    fn a_script_key_prints_its_hash_and_parses_back() {
        let key = ProfileKey::file((259 << 20) | 3, 77).with_script(0xab);
        assert!(key.is_script());
        assert_eq!(key.to_string(), "66307:77:00000000000000ab");
        assert_eq!("66307:77:00000000000000ab".parse::<ProfileKey>(), Ok(key));
        assert_ne!(key, ProfileKey::file((259 << 20) | 3, 77));
        assert!("66307:77:zz".parse::<ProfileKey>().is_err());
        // 0 means "no script": written that way it would name another profile.
        assert!("66307:77:0".parse::<ProfileKey>().is_err());
    }

    #[test]
    fn a_nameless_file_key_names_its_user_and_parses_back() {
        let key = ProfileKey::anonymous(65534, 0xabc);
        assert_eq!(key.anonymous_uid(), Some(65534));
        assert_eq!(key.to_string(), "anon:65534:0000000000000abc");
        assert_eq!(key.to_string().parse::<ProfileKey>(), Ok(key));
        let script = key.with_script(7);
        assert_eq!(script.to_string().parse::<ProfileKey>(), Ok(script));
        assert_eq!(ProfileKey::file(1, 2).anonymous_uid(), None);
        assert!("anon:x:1".parse::<ProfileKey>().is_err());
        assert!("anon:1".parse::<ProfileKey>().is_err());
    }

    #[test]
    fn key_round_trips_large_numbers() {
        let key = ProfileKey::file((4095 << 20) | 0xfffff, u64::MAX).with_script(u64::MAX);
        let back: ProfileKey = key.to_string().parse().unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn state_precedence_is_normal_then_frozen() {
        assert_eq!(State::from_bits(0), State::Training);
        assert_eq!(State::from_bits(PS_FROZEN), State::Frozen);
        assert_eq!(State::from_bits(PS_NORMAL), State::Normal);
        assert_eq!(State::from_bits(PS_NORMAL | PS_FROZEN), State::Normal);
    }

    #[test]
    fn table_counts_pairs_and_compacts() {
        let mut t = Table::default();
        let mut row = Box::new([0u8; NSYMBOLS]);
        row[3] = 0b1000_0001;
        t.rows.insert(1, row);
        t.rows.insert(2, Box::new([0u8; NSYMBOLS]));
        assert_eq!(t.pairs(), 2);
        assert_eq!(t.get(1, 3), 0b1000_0001);
        assert_eq!(t.get(7, 3), 0);
        assert_eq!(t.nonempty_rows(), 1);
        t.compact();
        assert_eq!(t.rows.len(), 1);
    }
}
