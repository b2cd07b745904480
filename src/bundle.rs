//! Profile bundles: the portable, checksummed form in which profiles move between hosts.
//!
//! A bundle names each profile by its content identity (`src/identity.rs`), never by `dev:ino`, so
//! a profile learned on one host applies to the same bytes anywhere. `docs/bundle.md` documents
//! the format; in short, a bundle is one JSON object:
//!
//! ```text
//! {"format": "ebpfh-profiles", "version": 1,
//!  "sha256": "<SHA-256 of the bytes of `body` exactly as they stand in the file>",
//!  "body": {"created": RFC 3339, "host": name, "ebpfh": version, "profiles": [ENTRY, ...]}}
//! ```
//!
//! Merging is a join: pairs are unioned, counters take the larger value, the state the less
//! advanced of the two (training < frozen < normal), paths and sources are unioned. So merging is
//! commutative, associative and idempotent: bundles from many hosts merge in any order, any number
//! of times, to the same profiles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::identity::{Digest, Identity};
use crate::profile::{
    Life, Profile, ProfileKey, Row, State, Table, PS_FROZEN, PS_NORMAL, PS_TAINTED,
};
use crate::settings::Settings;
use crate::syscalls::NSYMBOLS;

/// The `format` every bundle carries.
pub const FORMAT: &str = "ebpfh-profiles";
/// The bundle layout this ebpfh writes and reads.
pub const VERSION: u32 = 1;
/// A bundle bigger than this is refused unread: 4096 profiles of 1024 rows, as base64, and more.
pub const MAX_BYTES: u64 = 4 << 30;

/// Why bytes are not a usable bundle; each prints as the end of a sentence that starts with the
/// bundle's name (see [`read_all`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("cannot be read ({0})")]
    Io(String),
    #[error("is larger than any bundle ebpfh writes ({0} bytes), so it is not one")]
    TooLarge(u64),
    #[error("is truncated (its JSON ends early); copy it again")]
    Truncated,
    #[error("is not an ebpfh profile bundle ({0})")]
    NotABundle(String),
    #[error("is bundle version {0}, newer than this ebpfh reads ({VERSION}); upgrade ebpfh")]
    Newer(u32),
    #[error("is bundle version {0}, which no ebpfh writes")]
    UnknownVersion(u32),
    #[error("is damaged or was edited: its contents do not match its sha256; export it again")]
    Checksum,
    #[error("holds an invalid profile ({0}); export it again")]
    Invalid(String),
}

// ---------------------------------------------------------------------------------------------
// What a bundle holds

/// The settings a profile was learned under (pH's tunables).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Learned {
    /// As `--normal-wait` takes it (`7days`, `20s`).
    pub normal_wait: String,
    pub normal_factor: u32,
    pub normal_factor_den: u32,
    pub anomaly_limit: u32,
    pub tolerize_limit: u32,
}

impl From<&Settings> for Learned {
    fn from(s: &Settings) -> Self {
        Learned {
            normal_wait: humantime::format_duration(s.normal_wait).to_string(),
            normal_factor: s.normal_factor,
            normal_factor_den: s.normal_factor_den,
            anomaly_limit: s.anomaly_limit,
            tolerize_limit: s.tolerize_limit,
        }
    }
}

/// Where and when a profile was exported, and under which settings it was learned.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub host: String,
    /// RFC 3339, UTC.
    pub exported: String,
    pub settings: Learned,
}

impl Source {
    /// This host, now, under `settings`.
    pub fn here(host: &str, settings: &Settings) -> Source {
        Source {
            host: host.to_string(),
            exported: crate::clock::rfc3339(chrono::Utc::now()),
            settings: Learned::from(settings),
        }
    }
}

/// A profile's counters, as the kernel keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    pub count: u64,
    pub train_count: u64,
    pub last_mod_count: u64,
    pub sequences: u64,
    pub anomalies: u64,
    /// CLOCK_TAI nanoseconds after which a frozen profile becomes normal.
    pub normal_time: u64,
}

impl Counters {
    pub fn of(p: &Profile) -> Counters {
        Counters {
            count: p.count,
            train_count: p.train_count,
            last_mod_count: p.last_mod_count,
            sequences: p.sequences,
            anomalies: p.anomalies,
            normal_time: p.normal_time,
        }
    }

    /// Each counter's larger value: commutative, associative and idempotent.
    pub fn max(&self, o: &Counters) -> Counters {
        Counters {
            count: self.count.max(o.count),
            train_count: self.train_count.max(o.train_count),
            last_mod_count: self.last_mod_count.max(o.last_mod_count),
            sequences: self.sequences.max(o.sequences),
            anomalies: self.anomalies.max(o.anomalies),
            normal_time: self.normal_time.max(o.normal_time),
        }
    }

    fn set(&self, p: &mut Profile) {
        p.count = self.count;
        p.train_count = self.train_count;
        p.last_mod_count = self.last_mod_count;
        p.sequences = self.sequences;
        p.anomalies = self.anomalies;
        p.normal_time = self.normal_time;
    }
}

/// One profile in a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub identity: Identity,
    /// Every path the executable was seen at, on any host.
    pub paths: BTreeSet<String>,
    pub state: State,
    pub counters: Counters,
    /// The training pairs: per current call number, its row as 512 bytes of base64 (byte `j` =
    /// earlier call `j`, bit `i-1` = distance `i`).
    #[serde(with = "rows")]
    pub train: Table,
    /// The testing pairs (what a normal profile detects against), in the same form.
    #[serde(with = "rows")]
    pub test: Table,
    /// Where it was learned, when it was exported and under which settings.
    pub sources: BTreeSet<Source>,
}

/// The whole of a bundle, as its checksum covers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// RFC 3339, UTC.
    pub created: String,
    pub host: String,
    /// The version of ebpfh that wrote it.
    pub ebpfh: String,
    /// Sorted by identity, one per identity.
    pub profiles: Vec<Entry>,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    format: &'a str,
    version: u32,
    sha256: Digest,
    body: &'a RawValue,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    format: String,
    version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeV1<'a> {
    #[allow(dead_code)]
    format: String,
    #[allow(dead_code)]
    version: u32,
    sha256: Digest,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Row tables as `{"<current call>": "<base64 of its 512-byte row>"}`.
mod rows {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &Table, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (sym, row) in t.rows.iter().filter(|(_, r)| r.iter().any(|&b| b != 0)) {
            m.serialize_entry(
                &sym.to_string(),
                &base64::engine::general_purpose::STANDARD.encode(&row[..]),
            )?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Table, D::Error> {
        use serde::de::Error;
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        let mut t = Table::default();
        for (sym, b64) in raw {
            let symbol: u16 = sym
                .parse()
                .ok()
                .filter(|&s: &u16| usize::from(s) < NSYMBOLS && s.to_string() == sym)
                .ok_or_else(|| {
                    D::Error::custom(format!("'{sym}' is not a call number below {NSYMBOLS}"))
                })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&b64)
                .map_err(|e| {
                    D::Error::custom(format!("the row of call {symbol} is not base64 ({e})"))
                })?;
            let row: Row = bytes.try_into().map_err(|b: Vec<u8>| {
                D::Error::custom(format!(
                    "the row of call {symbol} has {} bytes, not {NSYMBOLS}",
                    b.len()
                ))
            })?;
            if row.iter().any(|&b| b != 0) {
                t.rows.insert(symbol, Box::new(row));
            }
        }
        Ok(t)
    }
}

// ---------------------------------------------------------------------------------------------
// Pairs, states and the merge rule

/// `a ∪ b`, row by row.
pub fn union(a: &Table, b: &Table) -> Table {
    let mut out = a.clone();
    union_into(&mut out, b);
    out
}

fn union_into(dst: &mut Table, src: &Table) {
    for (&sym, row) in &src.rows {
        let d = dst
            .rows
            .entry(sym)
            .or_insert_with(|| Box::new([0u8; NSYMBOLS]));
        for (x, y) in d.iter_mut().zip(row.iter()) {
            *x |= *y;
        }
    }
    dst.compact();
}

/// How far a state is along pH's lifecycle: training < frozen < normal.
fn rank(s: State) -> u8 {
    match s {
        State::Training => 0,
        State::Frozen => 1,
        State::Normal => 2,
    }
}

/// The less advanced of two states: a merge never trusts pairs more than either side did.
pub fn stricter(a: State, b: State) -> State {
    if rank(a) <= rank(b) {
        a
    } else {
        b
    }
}

/// A state's bits, as the kernel keeps them.
pub fn bits(s: State) -> u32 {
    match s {
        State::Training => 0,
        State::Frozen => PS_FROZEN,
        State::Normal => PS_NORMAL,
    }
}

impl Entry {
    /// The bundle form of a profile; `None` if its identity is unknown (it could not be matched
    /// on another host).
    pub fn from_profile(p: &Profile, source: Source) -> Option<Entry> {
        let identity = p.identity?;
        let mut train = p.train.clone();
        train.compact();
        let mut test = p.test.clone();
        test.compact();
        Some(Entry {
            identity,
            paths: std::iter::once(p.exe.clone())
                .filter(|e| !e.is_empty())
                .collect(),
            state: p.state(),
            counters: Counters::of(p),
            train,
            test,
            sources: BTreeSet::from([source]),
        })
    }

    /// The join of two entries of the same identity (see the module documentation).
    pub fn join(&self, o: &Entry) -> Entry {
        debug_assert_eq!(self.identity, o.identity);
        Entry {
            identity: self.identity,
            paths: self.paths.union(&o.paths).cloned().collect(),
            state: stricter(self.state, o.state),
            counters: self.counters.max(&o.counters),
            train: union(&self.train, &o.train),
            test: union(&self.test, &o.test),
            sources: self.sources.union(&o.sources).cloned().collect(),
        }
    }

    /// The entry made normal at once, as `ebpfh normalize` would make it: everything it learned
    /// becomes testing data, and the counts that lead to normal start over.
    pub fn normalized(&self) -> Entry {
        let mut e = self.clone();
        e.state = State::Normal;
        union_into(&mut e.test, &self.train);
        e.counters.anomalies = 0;
        e.counters.train_count = 0;
        e.counters.last_mod_count = 0;
        e
    }

    /// The path to show for it: the first of its paths.
    pub fn path(&self) -> &str {
        self.paths.iter().next().map_or("", |p| p.as_str())
    }
}

/// What an import does to the state of a profile the host already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ImportAs {
    /// The less advanced of the host's state and the bundle's (the default).
    Stricter,
    /// The bundle's state, whatever the host's was.
    Bundle,
    /// Normal at once: everything either side learned becomes testing data.
    Normal,
}

/// What importing `e` makes of the host's profile `local` of the same identity: pairs unioned
/// (training with training, testing with testing), each counter at the larger of the two values,
/// the state as `how` says. The profile keeps `local`'s key, path, lifecycle counters (host-local:
/// they are not in bundles) and taint, except that `--as normal` clears the taint, as an operator's
/// normalize does; a normal profile's pending pairs (training pairs its testing data lacks, see
/// `Profile::adopt_pending`) are counted again.
pub fn import_into(local: &Profile, e: &Entry, how: ImportAs) -> Profile {
    let state = match how {
        ImportAs::Stricter => stricter(local.state(), e.state),
        ImportAs::Bundle => e.state,
        ImportAs::Normal => State::Normal,
    };
    let mut p = Profile {
        key: local.key,
        exe: if local.exe.is_empty() {
            e.path().to_string()
        } else {
            local.exe.clone()
        },
        identity: local.identity.or(Some(e.identity)),
        state: bits(state),
        life: Life {
            pending: 0,
            ..local.life
        },
        train: union(&local.train, &e.train),
        test: union(&local.test, &e.test),
        ..Profile::default()
    };
    if how != ImportAs::Normal {
        p.state |= local.state & PS_TAINTED;
    }
    Counters::of(local).max(&e.counters).set(&mut p);
    if how == ImportAs::Normal {
        let train = p.train.clone();
        union_into(&mut p.test, &train);
        p.anomalies = 0;
        p.train_count = 0;
        p.last_mod_count = 0;
    }
    p.adopt_pending();
    p
}

/// A profile for the executable `key` at `exe` that the host never ran: the bundle's own.
pub fn new_profile(key: ProfileKey, exe: &str, e: &Entry, how: ImportAs) -> Profile {
    let empty = Profile {
        key,
        exe: exe.to_string(),
        life: Life::fresh(crate::clock::tai_now()),
        ..Profile::default()
    };
    let how = match how {
        ImportAs::Normal => ImportAs::Normal,
        ImportAs::Stricter | ImportAs::Bundle => ImportAs::Bundle,
    };
    import_into(&empty, e, how)
}

// ---------------------------------------------------------------------------------------------
// Bundles

impl Body {
    /// A bundle of `entries`, joined by identity and sorted.
    pub fn new(host: &str, entries: impl IntoIterator<Item = Entry>) -> Body {
        Body {
            created: crate::clock::rfc3339(chrono::Utc::now()),
            host: host.to_string(),
            ebpfh: env!("CARGO_PKG_VERSION").to_string(),
            profiles: merge_entries(entries),
        }
    }

    /// The file's bytes: the envelope with this body and its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_string_pretty(self).expect("bundles are plain data");
        let raw = RawValue::from_string(body).expect("serde_json wrote valid JSON");
        let env = EnvelopeOut {
            format: FORMAT,
            version: VERSION,
            sha256: Digest::of(raw.get().as_bytes()),
            body: &raw,
        };
        let mut out = serde_json::to_vec(&env).expect("bundles are plain data");
        out.push(b'\n');
        out
    }

    /// Parses and verifies a bundle: the envelope, its version, the checksum, then the contents.
    pub fn decode(bytes: &[u8]) -> Result<Body, BundleError> {
        let json = |e: serde_json::Error| {
            if e.classify() == serde_json::error::Category::Eof {
                BundleError::Truncated
            } else {
                BundleError::NotABundle(e.to_string())
            }
        };
        // Format and version first: a newer layout may differ in anything else.
        let env: EnvelopeIn = serde_json::from_slice(bytes).map_err(json)?;
        if env.format != FORMAT {
            return Err(BundleError::NotABundle(format!(
                "its format is '{}', not '{FORMAT}'",
                env.format
            )));
        }
        match env.version {
            VERSION => {}
            v if v > VERSION => return Err(BundleError::Newer(v)),
            v => return Err(BundleError::UnknownVersion(v)),
        }
        let env: EnvelopeV1 = serde_json::from_slice(bytes).map_err(json)?;
        if Digest::of(env.body.get().as_bytes()) != env.sha256 {
            return Err(BundleError::Checksum);
        }
        let body: Body = serde_json::from_str(env.body.get())
            .map_err(|e| BundleError::Invalid(e.to_string()))?;
        body.check()?;
        Ok(body)
    }

    /// What the checksum cannot say: one entry per identity, in order.
    fn check(&self) -> Result<(), BundleError> {
        for w in self.profiles.windows(2) {
            if w[0].identity >= w[1].identity {
                return Err(BundleError::Invalid(format!(
                    "the profile {} is listed twice or out of order",
                    w[1].identity
                )));
            }
        }
        Ok(())
    }

    /// Reads and verifies the bundle at `path` (`-` is standard input).
    pub fn read(path: &Path) -> Result<Body, BundleError> {
        use std::io::Read;
        let mut bytes = Vec::new();
        let io = |e: std::io::Error| BundleError::Io(e.to_string());
        if path == Path::new("-") {
            std::io::stdin()
                .take(MAX_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
        } else {
            let f = std::fs::File::open(path).map_err(io)?;
            f.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
        }
        if bytes.len() as u64 > MAX_BYTES {
            return Err(BundleError::TooLarge(bytes.len() as u64));
        }
        Body::decode(&bytes)
    }

    /// The profile of `identity`, if the bundle has one.
    pub fn get(&self, identity: &Identity) -> Option<&Entry> {
        self.profiles
            .binary_search_by(|e| e.identity.cmp(identity))
            .ok()
            .map(|i| &self.profiles[i])
    }
}

/// Entries joined by identity, sorted by it.
pub fn merge_entries(entries: impl IntoIterator<Item = Entry>) -> Vec<Entry> {
    let mut by_id: BTreeMap<Identity, Entry> = BTreeMap::new();
    for e in entries {
        match by_id.get_mut(&e.identity) {
            Some(have) => *have = have.join(&e),
            None => {
                by_id.insert(e.identity, e);
            }
        }
    }
    by_id.into_values().collect()
}

/// `ebpfh profile merge`: the join of every bundle's profiles.
pub fn merge(host: &str, bodies: &[Body]) -> Body {
    Body::new(host, bodies.iter().flat_map(|b| b.profiles.iter().cloned()))
}

/// Reads every bundle named; if any one is bad, refuses the lot with the file's name and one
/// sentence.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Body>, String> {
    paths
        .iter()
        .map(|p| Body::read(p).map_err(|e| format!("the bundle '{}' {e}", p.display())))
        .collect()
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, fsynced, renamed over it), or
/// to standard output for `-`.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        return out.flush();
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output names no file"))?
        .to_string_lossy()
        .into_owned();
    crate::store::write_atomic(&dir, &name, bytes)
}

#[cfg(test)]
mod tests;
