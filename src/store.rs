//! The profile store: one checksummed, versioned file per profile under a locked state directory.
//!
//! Layout of a state directory (default `/var/lib/ebpfh`, all 0700):
//!
//! ```text
//! format                    store layout version ("2\n")
//! lock                      flock(2)ed by the running monitor, holds its pid
//! settings                  what `ebpfh set` changed, `name value` per line
//! profiles/<dev>-<ino>.prof one file per profile (see [`encode`]), 0600; a script profile's
//!                           name ends in -<script hash>.prof
//! quarantine/<name>.<time>  files that could not be read, kept for a human to look at
//! ```
//!
//! Every write goes to a temporary file that is fsynced and renamed over the target, so a crash or
//! a full disk leaves either the old or the new profile, never a mix.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::libc;

use crate::profile::{Life, Profile, ProfileKey, Row, Table, NOVELTY_ONE, PS_KEPT};
use crate::syscalls::NSYMBOLS;

/// Where the monitor keeps its state unless told otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/ebpfh";
/// Version of the directory layout, written to `<dir>/format`. 2: profile files may be of format 4
/// and may be named for a script (an older ebpfh must refuse the directory rather than set such
/// files aside as unreadable). A directory of format 1 is upgraded when opened; its files are
/// read as they are.
pub const STORE_FORMAT: u32 = 2;
/// Version of a profile file, written after [`MAGIC`]. Version 1 (no content identity), version 2
/// (no lifecycle block) and version 3 (no script block) are still read.
pub const FILE_FORMAT: u32 = 4;
/// The oldest profile file version this ebpfh reads.
const OLDEST_FILE_FORMAT: u32 = 1;
/// First bytes of every profile file.
pub const MAGIC: &[u8; 8] = b"EBPFHPRF";
/// Longest executable path a file may carry (Linux's `PATH_MAX`).
pub const MAX_EXE: usize = 4096;

const PROFILES: &str = "profiles";
const QUARANTINE: &str = "quarantine";
const FORMAT_FILE: &str = "format";
const LOCK_FILE: &str = "lock";
/// Settings changed with `ebpfh set`, applied again when the monitor restarts.
const SETTINGS_FILE: &str = "settings";
const SUFFIX: &str = ".prof";
const ROW_BYTES: usize = 2 + NSYMBOLS;
/// Size of the fixed part: magic, version, key, state, six counters, the lifecycle block.
const HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 4 + 6 * 8 + LIFE_BYTES;
/// The lifecycle block (version 3 on): three u64 and four u32.
const LIFE_BYTES: usize = 3 * 8 + 4 * 4;
/// The script block (version 4 on) without its path: the key's script hash, the owner, the path's
/// length.
const SCRIPT_BYTES: usize = 8 + 4 + 4;
/// Digests of a profile's identity: the executable's and, for a script profile, the script's.
const MAX_DIGESTS: usize = 2;
/// The largest file [`encode`] can produce; anything bigger is not ours and is not read whole.
const MAX_FILE_BYTES: usize = HEADER_BYTES
    + 4
    + MAX_EXE
    + 1
    + MAX_DIGESTS * 32
    + SCRIPT_BYTES
    + MAX_EXE
    + 2 * (4 + NSYMBOLS * ROW_BYTES)
    + 4;

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the directory '{}': {error}; check the permissions of its parent or pass --state-dir", path.display())]
    CreateDir { path: PathBuf, error: io::Error },
    #[error("cannot read the directory '{}': {error}; check its permissions or pass --state-dir", path.display())]
    ReadDir { path: PathBuf, error: io::Error },
    #[error("cannot read or write the store format file '{}': {error}; check its permissions or pass --state-dir", path.display())]
    FormatIo { path: PathBuf, error: io::Error },
    #[error("'{}' does not hold a store format number, so the directory may not be ebpfh's; pass another --state-dir or remove the file", path.display())]
    FormatUnknown { path: PathBuf },
    #[error("'{}' was written by a newer ebpfh (store format {found}, this one reads {STORE_FORMAT}); upgrade ebpfh or pass another --state-dir", dir.display())]
    FormatNewer { dir: PathBuf, found: u32 },
    #[error("cannot lock '{}': {error}; check its permissions or pass --state-dir", path.display())]
    Lock { path: PathBuf, error: io::Error },
    #[error("another ebpfh monitor{} is using '{}'; stop it or pass --state-dir", holder(*pid), dir.display())]
    Locked { dir: PathBuf, pid: Option<u32> },
    #[error(transparent)]
    Unsafe(#[from] crate::safedir::UnsafeDir),
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Why bytes are not a usable profile file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not an ebpfh profile (it does not start with EBPFHPRF)")]
    NotAProfile,
    #[error("written by a newer ebpfh (format {0}, this one reads {FILE_FORMAT}); upgrade ebpfh to use it")]
    Newer(u32),
    #[error("unknown profile format {0}")]
    UnknownVersion(u32),
    #[error("truncated: the file ends inside the {0}")]
    Truncated(&'static str),
    #[error("{0} unexpected bytes follow the checksum")]
    TrailingBytes(usize),
    #[error(
        "checksum mismatch (stored {stored:08x}, computed {computed:08x}), so the file is damaged"
    )]
    Checksum { stored: u32, computed: u32 },
    #[error("unknown state bits {0:#x}")]
    UnknownState(u32),
    #[error("the executable path is {0} bytes long, more than {MAX_EXE}")]
    ExeTooLong(usize),
    #[error("the executable path is not valid UTF-8")]
    ExeNotUtf8,
    #[error("the identity holds {0} digests, more than {MAX_DIGESTS}")]
    Digests(u8),
    #[error("the script path is {0} bytes long, more than {MAX_EXE}")]
    ScriptTooLong(usize),
    #[error("the script path is not valid UTF-8")]
    ScriptNotUtf8,
    #[error("the {table} table has a row for symbol {symbol}, outside 0..{NSYMBOLS}")]
    SymbolRange { table: &'static str, symbol: u16 },
    #[error("the {table} table's rows are out of order (symbol {symbol} follows {previous})")]
    SymbolOrder {
        table: &'static str,
        previous: u16,
        symbol: u16,
    },
}

// ---------------------------------------------------------------------------------------------
// File format

/// Serializes a profile as one file (all integers little-endian):
///
/// ```text
/// "EBPFHPRF" u32 version
/// u64 kdev, u64 ino, u32 state, u64 count, train_count, last_mod_count, sequences, anomalies,
///     normal_time
/// u64 runs, last_new_time, budget_time, u32 novelty, budget, pending, repeat_runs (version 3 on)
/// u32 exe length, exe bytes (UTF-8, at most 4096)
/// u8 digests (0: identity unknown, 1: executable, 2: executable then script), 32 bytes each
///     (SHA-256, see `src/identity.rs`; version 2 on, absent from version 1 files)
/// u64 script hash (the key's third part, 0 = not a script profile), u32 owner (the uid that
///     created it), u32 script length, script bytes (UTF-8, at most 4096) (version 4 on)
/// train table, test table: u32 rows, then per row u16 symbol (< 512, increasing) + 512 bytes
/// u32 CRC32 of everything before it
/// ```
pub fn encode(p: &Profile) -> Vec<u8> {
    let exe = clip_exe(&p.exe);
    let script = clip_exe(&p.script);
    let (train, test) = (rows(&p.train), rows(&p.test));
    let digests: Vec<&crate::identity::Digest> = p
        .identity
        .iter()
        .flat_map(|id| std::iter::once(&id.sha256).chain(&id.script_sha256))
        .collect();
    let mut out = Vec::with_capacity(
        HEADER_BYTES
            + 4
            + exe.len()
            + 1
            + 32 * digests.len()
            + SCRIPT_BYTES
            + script.len()
            + 8
            + (train.len() + test.len()) * ROW_BYTES
            + 4,
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FILE_FORMAT.to_le_bytes());
    out.extend_from_slice(&p.key.kdev.to_le_bytes());
    out.extend_from_slice(&p.key.ino.to_le_bytes());
    out.extend_from_slice(&p.state.to_le_bytes());
    for n in [
        p.count,
        p.train_count,
        p.last_mod_count,
        p.sequences,
        p.anomalies,
        p.normal_time,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    let l = &p.life;
    for n in [l.runs, l.last_new_time, l.budget_time] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for n in [l.novelty, l.budget, l.pending, l.repeat_runs] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(exe.len() as u32).to_le_bytes());
    out.extend_from_slice(exe.as_bytes());
    out.push(digests.len() as u8);
    for d in digests {
        out.extend_from_slice(&d.0);
    }
    out.extend_from_slice(&p.key.script.to_le_bytes());
    out.extend_from_slice(&p.owner.to_le_bytes());
    out.extend_from_slice(&(script.len() as u32).to_le_bytes());
    out.extend_from_slice(script.as_bytes());
    for table in [train, test] {
        out.extend_from_slice(&(table.len() as u32).to_le_bytes());
        for (symbol, row) in table {
            out.extend_from_slice(&symbol.to_le_bytes());
            out.extend_from_slice(row);
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The rows [`encode`] writes.
fn rows(t: &Table) -> Vec<(u16, &Row)> {
    t.rows
        .iter()
        // A row past the table's width cannot exist in the kernel, and writing one would make the
        // file unreadable; an all-zero row means the same as no row.
        .filter(|(&s, r)| usize::from(s) < NSYMBOLS && r.iter().any(|&b| b != 0))
        .map(|(&s, r)| (s, &**r))
        .collect()
}

/// The longest prefix of `exe` that fits the format, cut on a character boundary.
///
/// The kernel never reports a path longer than `PATH_MAX`, so this only guards against a caller
/// bug turning into an unreadable file.
fn clip_exe(exe: &str) -> &str {
    if exe.len() <= MAX_EXE {
        return exe;
    }
    let mut end = MAX_EXE;
    while !exe.is_char_boundary(end) {
        end -= 1;
    }
    &exe[..end]
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(FormatError::Truncated(what))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    /// A table's rows, checked only for being present; their meaning is checked after the CRC.
    fn rows(&mut self, what: &'static str) -> Result<Vec<(u16, &'a [u8])>, FormatError> {
        let n = self.u32(what)?;
        // No preallocation from `n`: a damaged count must not allocate gigabytes.
        let mut rows = Vec::new();
        for _ in 0..n {
            let symbol = self.u16(what)?;
            rows.push((symbol, self.take(NSYMBOLS, what)?));
        }
        Ok(rows)
    }
}

/// Parses a profile file, verifying its structure, checksum and contents.
///
/// Structure comes first so that a short file says "truncated" rather than "checksum mismatch";
/// contents come after the checksum so that a damaged byte says "checksum mismatch" rather than
/// whatever the damage happens to look like.
pub fn decode(buf: &[u8]) -> Result<Profile, FormatError> {
    let mut r = Reader { buf, pos: 0 };
    if buf.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(buf) {
            FormatError::Truncated("header")
        } else {
            FormatError::NotAProfile
        });
    }
    if r.take(MAGIC.len(), "header")? != MAGIC {
        return Err(FormatError::NotAProfile);
    }
    let version = match r.u32("header")? {
        v @ OLDEST_FILE_FORMAT..=FILE_FORMAT => v,
        v if v > FILE_FORMAT => return Err(FormatError::Newer(v)),
        v => return Err(FormatError::UnknownVersion(v)),
    };
    let key = ProfileKey::file(r.u64("header")?, r.u64("header")?);
    let state = r.u32("header")?;
    let mut counters = [0u64; 6];
    for c in &mut counters {
        *c = r.u64("header")?;
    }
    // An older profile starts the ebpfh lifecycle afresh: novelty unknown (every run), and no
    // quiet freeze before a normal_wait past its normal_time.
    let mut life = Life {
        novelty: NOVELTY_ONE,
        last_new_time: counters[5],
        ..Life::default()
    };
    if version >= 3 {
        life.runs = r.u64("header")?;
        life.last_new_time = r.u64("header")?;
        life.budget_time = r.u64("header")?;
        life.novelty = r.u32("header")?;
        life.budget = r.u32("header")?;
        life.pending = r.u32("header")?;
        life.repeat_runs = r.u32("header")?;
    }
    let exe_len = r.u32("executable path")? as usize;
    let exe = r.take(exe_len, "executable path")?;
    let mut digests = Vec::new();
    let mut n_digests = 0;
    if version >= 2 {
        n_digests = r.take(1, "identity")?[0];
        // Checked before the CRC only as far as the structure needs: a bad count is refused after.
        for _ in 0..n_digests.min(MAX_DIGESTS as u8) {
            let d: [u8; 32] = r.take(32, "identity")?.try_into().unwrap();
            digests.push(crate::identity::Digest(d));
        }
    }
    let (mut script_hash, mut owner, mut script_len, mut script) = (0, 0, 0, &[][..]);
    if version >= 4 {
        script_hash = r.u64("script")?;
        owner = r.u32("script")?;
        script_len = r.u32("script")? as usize;
        script = r.take(script_len, "script")?;
    }
    let key = key.with_script(script_hash);
    let train = r.rows("train table")?;
    let test = r.rows("test table")?;
    let body = r.pos;
    let stored = r.u32("checksum")?;
    if r.pos < buf.len() {
        return Err(FormatError::TrailingBytes(buf.len() - r.pos));
    }
    let computed = crc32fast::hash(&buf[..body]);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }

    if state & !PS_KEPT != 0 {
        return Err(FormatError::UnknownState(state));
    }
    if exe_len > MAX_EXE {
        return Err(FormatError::ExeTooLong(exe_len));
    }
    if usize::from(n_digests) > MAX_DIGESTS {
        return Err(FormatError::Digests(n_digests));
    }
    let identity = digests.first().map(|&sha256| crate::identity::Identity {
        sha256,
        script_sha256: digests.get(1).copied(),
    });
    let exe = std::str::from_utf8(exe).map_err(|_| FormatError::ExeNotUtf8)?;
    if script_len > MAX_EXE {
        return Err(FormatError::ScriptTooLong(script_len));
    }
    let script = std::str::from_utf8(script).map_err(|_| FormatError::ScriptNotUtf8)?;
    let [count, train_count, last_mod_count, sequences, anomalies, normal_time] = counters;
    Ok(Profile {
        key,
        exe: exe.to_owned(),
        script: script.to_owned(),
        owner,
        identity,
        state,
        count,
        train_count,
        last_mod_count,
        sequences,
        anomalies,
        normal_time,
        life,
        train: table("train", &train)?,
        test: table("test", &test)?,
    })
}

fn table(name: &'static str, rows: &[(u16, &[u8])]) -> Result<Table, FormatError> {
    let mut out = BTreeMap::new();
    let mut previous: Option<u16> = None;
    for &(symbol, bytes) in rows {
        if usize::from(symbol) >= NSYMBOLS {
            return Err(FormatError::SymbolRange {
                table: name,
                symbol,
            });
        }
        if let Some(previous) = previous.filter(|&p| p >= symbol) {
            return Err(FormatError::SymbolOrder {
                table: name,
                previous,
                symbol,
            });
        }
        previous = Some(symbol);
        // Zero rows are never written, but reading one must not cost a kernel row either.
        if bytes.iter().any(|&b| b != 0) {
            out.insert(symbol, Box::new(bytes.try_into().unwrap()));
        }
    }
    Ok(Table { rows: out })
}

/// File name of a profile: `<st_dev>-<ino>.prof`, the numbers `stat -c %d-%i` shows, and for a
/// script profile `<st_dev>-<ino>-<script hash>.prof`.
pub fn file_name(key: &ProfileKey) -> String {
    let file = match key.anonymous_uid() {
        Some(uid) => format!("anon-{uid}-{:016x}", key.ino),
        None => format!("{}-{}", key.st_dev(), key.ino),
    };
    if key.is_script() {
        format!("{file}-{:016x}{SUFFIX}", key.script)
    } else {
        format!("{file}{SUFFIX}")
    }
}

// ---------------------------------------------------------------------------------------------
// Writing files

/// Whether `e` means there is no room left on the filesystem (ENOSPC, or EDQUOT for a quota).
fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        // Errors built from the kind alone (no errno) still count.
        || e.kind() == io::Error::from_raw_os_error(libc::ENOSPC).kind()
}

/// Rewords a failed step of a save; a full disk gets its own sentence because it is the one
/// failure an operator meets in practice and can act on.
fn explain(e: io::Error, step: &str, path: &Path) -> io::Error {
    let message = if is_disk_full(&e) {
        "the disk is full; free some space on it (any earlier copy is kept)".to_string()
    } else {
        format!("cannot {step} '{}': {e}", path.display())
    };
    io::Error::new(e.kind(), message)
}

/// The error [`Store::save`] returns: names the profile's file, then what went wrong.
fn save_error(target: &Path, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot save the profile '{}': {e}", target.display()),
    )
}

/// Writes all of `bytes` and forces them to the device.
fn write_synced(file: &mut File, bytes: &[u8], path: &Path) -> io::Result<()> {
    file.write_all(bytes)
        .map_err(|e| explain(e, "write", path))?;
    file.sync_all()
        .map_err(|e| explain(e, "flush to disk", path))
}

/// Flushes a directory's entries, which is what makes a rename inside it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| explain(e, "flush the directory", dir))
}

/// Replaces `<dir>/<name>` with `bytes` via `<dir>/.<name>.tmp.<pid>`; readers see the old file
/// or the new one, never a part. The directory itself is not synced: callers batch that.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let target = dir.join(name);
    // A crash of an earlier process with the same pid can leave this name behind.
    let _ = fs::remove_file(&tmp);
    let result = OpenOptions::new()
        .write(true)
        // Exclusive creation also refuses to follow a symlink planted at the temporary name.
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| explain(e, "create", &tmp))
        .and_then(|mut f| write_synced(&mut f, bytes, &tmp))
        .and_then(|()| {
            fs::rename(&tmp, &target)
                .map_err(|e| explain(e, &format!("rename '{}' to", tmp.display()), &target))
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Replaces `<dir>/<name>` with `bytes` atomically and durably: other files (bundles, pending
/// imports) get the same care as profiles.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    replace_file(dir, name, bytes)?;
    sync_dir(dir)
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp.")
}

// ---------------------------------------------------------------------------------------------
// The store

/// Profiles read by [`Store::load_all`], and the files it had to move away.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Sorted by key.
    pub profiles: Vec<Profile>,
    /// Each file's original path and why it could not be used (already logged).
    pub set_aside: Vec<(PathBuf, String)>,
}

/// What [`Store::save_all`] did.
#[derive(Debug, Default)]
pub struct SaveReport {
    /// Files written because their profile changed.
    pub saved: usize,
    /// Profiles skipped because the file already holds exactly these bytes.
    pub unchanged: usize,
    /// Target path and why it could not be written; the previous file, if any, is intact.
    pub failed: Vec<(PathBuf, String)>,
}

/// A state directory: see the module documentation for its layout.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    profiles: PathBuf,
    /// Hash of the bytes each profile's file holds, as far as this store wrote or read them; a
    /// save of identical bytes is skipped. Keyed hashing makes a collision unpredictable.
    on_disk: Mutex<HashMap<ProfileKey, u64>>,
    hasher: RandomState,
}

/// Creates `path` (0700) if missing; an existing directory keeps its mode.
fn make_dir(path: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|error| StoreError::CreateDir {
            path: path.to_owned(),
            error,
        })
}

impl Store {
    /// Opens the state directory `dir`, creating it and its layout if missing.
    ///
    /// Refuses a directory whose `format` file is newer or unreadable, before touching anything
    /// else in it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let dir = dir.as_ref().to_owned();
        make_dir(&dir)?;
        let format = dir.join(FORMAT_FILE);
        match fs::read_to_string(&format) {
            Ok(text) => match text.trim().parse::<u32>() {
                Ok(STORE_FORMAT) => {}
                // Format 1's files are read as they are; say the directory now holds format 2.
                Ok(1) => replace_file(&dir, FORMAT_FILE, format!("{STORE_FORMAT}\n").as_bytes())
                    .and_then(|()| sync_dir(&dir))
                    .map_err(|error| StoreError::FormatIo {
                        path: format.clone(),
                        error,
                    })?,
                Ok(found) if found > STORE_FORMAT => {
                    return Err(StoreError::FormatNewer { dir, found })
                }
                _ => return Err(StoreError::FormatUnknown { path: format }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                replace_file(&dir, FORMAT_FILE, format!("{STORE_FORMAT}\n").as_bytes())
                    .and_then(|()| sync_dir(&dir))
                    .map_err(|error| StoreError::FormatIo {
                        path: format.clone(),
                        error,
                    })?;
            }
            Err(error) => {
                return Err(StoreError::FormatIo {
                    path: format,
                    error,
                })
            }
        }
        let profiles = dir.join(PROFILES);
        make_dir(&profiles)?;
        // A symlink here (or a directory someone else can write) would send every save
        // elsewhere; the state directory itself was checked by the monitor.
        let me = nix::unistd::geteuid().as_raw();
        crate::safedir::check_one(&profiles, &profiles, "profiles directory", me)?;
        // Fail here, loudly, rather than in load_all, which must not stop the monitor: starting
        // with no profiles over a directory we cannot list would overwrite trained ones.
        fs::read_dir(&profiles).map_err(|error| StoreError::ReadDir {
            path: profiles.clone(),
            error,
        })?;
        Ok(Store {
            dir,
            profiles,
            on_disk: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the profile with `key` is kept.
    pub fn path_of(&self, key: &ProfileKey) -> PathBuf {
        self.profiles.join(file_name(key))
    }

    /// Takes the directory for this process until the returned guard is dropped.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let lock_error = |error| StoreError::Lock {
            path: path.clone(),
            error,
        };
        // Not truncated on open: if someone holds it, its pid is what the error should show.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(lock_error)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(StoreError::Locked {
                    dir: self.dir.clone(),
                    pid,
                });
            }
            Err((_, errno)) => return Err(lock_error(io::Error::from(errno))),
        };
        file.set_len(0)
            .and_then(|()| file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0))
            .map_err(lock_error)?;
        Ok(StoreLock { file })
    }

    /// Reads every profile file; a file that cannot be used is moved to `quarantine/` and
    /// reported, never fatal. Removes temporary files a crash left behind.
    pub fn load_all(&self) -> LoadReport {
        let mut report = LoadReport::default();
        let entries = match fs::read_dir(&self.profiles) {
            Ok(entries) => entries,
            Err(e) => {
                log::error!(
                    "cannot read the directory '{}': {e}; starting without saved profiles",
                    self.profiles.display()
                );
                return report;
            }
        };
        // Names that are not UTF-8 cannot be ours.
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut on_disk = HashMap::new();
        for name in names {
            let path = self.profiles.join(&name);
            if is_temp_name(&name) {
                match fs::remove_file(&path) {
                    Ok(()) => log::info!("removed '{}', left over from a crash", path.display()),
                    Err(e) => log::warn!(
                        "cannot remove '{}', left over from a crash: {e}",
                        path.display()
                    ),
                }
                continue;
            }
            if !name.ends_with(SUFFIX) {
                continue;
            }
            match self.read(&path, &name) {
                Ok((profile, bytes)) => {
                    on_disk.insert(profile.key, self.hasher.hash_one(&bytes));
                    report.profiles.push(profile);
                }
                Err(reason) => {
                    match self.quarantine(&path, &name) {
                        Ok(to) => log::warn!(
                            "profile file '{}' is unusable ({reason}); moved it to '{}' and continuing without it",
                            path.display(),
                            to.display()
                        ),
                        Err(e) => log::warn!(
                            "profile file '{}' is unusable ({reason}) and could not be moved aside ({e}); continuing without it",
                            path.display()
                        ),
                    }
                    report.set_aside.push((path, reason));
                }
            }
        }
        report.profiles.sort_by_key(|p| p.key);
        self.on_disk.lock().unwrap().extend(on_disk);
        report
    }

    /// One file's profile and raw bytes, or why it cannot be used.
    fn read(&self, path: &Path, name: &str) -> Result<(Profile, Vec<u8>), String> {
        // A symlink here was not made by us; following it could read anything on the system.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| format!("cannot open it: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read it: {e}"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if meta.size() > MAX_FILE_BYTES as u64 {
            return Err(format!(
                "{} bytes, larger than any profile can be",
                meta.size()
            ));
        }
        let mut bytes = Vec::with_capacity(meta.size() as usize);
        (&mut file)
            .take(MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        let profile = decode(&bytes).map_err(|e| e.to_string())?;
        let expected = file_name(&profile.key);
        if expected != name {
            return Err(format!(
                "it holds profile {}, whose file is named '{expected}'",
                profile.key
            ));
        }
        Ok((profile, bytes))
    }

    /// Moves a bad file to `quarantine/<name>.<unix time>` and returns where it went.
    fn quarantine(&self, path: &Path, name: &str) -> Result<PathBuf, String> {
        let dir = self.dir.join(QUARANTINE);
        make_dir(&dir).map_err(|e| e.to_string())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut to = dir.join(format!("{name}.{now}"));
        // rename(2) would silently replace an earlier casualty of the same second.
        let mut n = 1;
        while fs::symlink_metadata(&to).is_ok() {
            to = dir.join(format!("{name}.{now}.{n}"));
            n += 1;
        }
        fs::rename(path, &to)
            .map_err(|e| format!("cannot rename it to '{}': {e}", to.display()))?;
        Ok(to)
    }

    /// Writes one profile atomically (temporary file, fsync, rename, directory fsync); on any
    /// error, including a full disk, the previous file is left as it was.
    pub fn save(&self, profile: &Profile) -> io::Result<()> {
        let target = self.path_of(&profile.key);
        let written = self
            .write_if_changed(profile)
            .map_err(|e| save_error(&target, &e))?;
        if let Some(hash) = written {
            sync_dir(&self.profiles).map_err(|e| save_error(&target, &e))?;
            self.on_disk.lock().unwrap().insert(profile.key, hash);
        }
        Ok(())
    }

    /// Saves every profile whose bytes changed since this store last wrote or read them, with one
    /// directory fsync for the lot.
    pub fn save_all(&self, profiles: &[Profile]) -> SaveReport {
        let mut report = SaveReport::default();
        let mut written = Vec::new();
        for p in profiles {
            match self.write_if_changed(p) {
                Ok(Some(hash)) => written.push((p.key, hash)),
                Ok(None) => report.unchanged += 1,
                Err(e) => report.failed.push((self.path_of(&p.key), e.to_string())),
            }
        }
        if written.is_empty() {
            return report;
        }
        match sync_dir(&self.profiles) {
            Ok(()) => {
                report.saved = written.len();
                self.on_disk.lock().unwrap().extend(written);
            }
            // The renames happened but may not survive a crash; not recording them makes the
            // next save try again.
            Err(e) => {
                let why = e.to_string();
                report.failed.extend(
                    written
                        .into_iter()
                        .map(|(key, _)| (self.path_of(&key), why.clone())),
                );
            }
        }
        report
    }

    /// Writes `p`'s file unless it already holds these bytes; returns the new bytes' hash if it
    /// wrote. The caller syncs the directory and records the hash.
    fn write_if_changed(&self, p: &Profile) -> io::Result<Option<u64>> {
        let bytes = encode(p);
        let hash = self.hasher.hash_one(&bytes);
        // Unchanged bytes are skipped only while the file is still there: a profile file deleted
        // by hand comes back at the next save, not at its next change.
        let unchanged = self.on_disk.lock().unwrap().get(&p.key) == Some(&hash);
        if unchanged && self.profiles.join(file_name(&p.key)).exists() {
            return Ok(None);
        }
        replace_file(&self.profiles, &file_name(&p.key), &bytes)?;
        Ok(Some(hash))
    }
}

impl Store {
    /// The settings `ebpfh set` changed, as `(name, value)` in the order they were first set;
    /// none when the file is missing.
    pub fn load_settings(&self) -> io::Result<Vec<(String, String)>> {
        let path = self.dir.join(SETTINGS_FILE);
        let text = match read_no_follow(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Replaces the settings file atomically (one `name value` line each) and makes it durable.
    pub fn save_settings(&self, settings: &[(String, String)]) -> io::Result<()> {
        let text: String = settings.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        replace_file(&self.dir, SETTINGS_FILE, text.as_bytes())
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot save the settings to '{}': {e}",
                        self.dir.join(SETTINGS_FILE).display()
                    ),
                )
            })
    }
}

/// Reads a small text file without following a symlink planted at its name.
fn read_no_follow(path: &Path) -> io::Result<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut text = String::new();
    (&mut file).take(64 << 10).read_to_string(&mut text)?;
    Ok(text)
}

/// Proof that this process owns the state directory; dropping it lets another monitor in.
#[derive(Debug)]
pub struct StoreLock {
    file: Flock<File>,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // A stale pid would only mislead someone reading the file by hand; flock itself is
        // released when the Flock is dropped right after.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::PS_FROZEN;
    use std::os::unix::fs::PermissionsExt;

    fn row(pairs: &[(usize, u8)]) -> Box<[u8; NSYMBOLS]> {
        let mut r = Box::new([0u8; NSYMBOLS]);
        for &(i, b) in pairs {
            r[i] = b;
        }
        r
    }

    /// A profile shaped like a trained `/usr/bin/ls`: several rows in both tables, every counter
    /// distinct so that a swapped field shows.
    fn sample() -> Profile {
        let mut p = Profile {
            key: ProfileKey::file((259 << 20) | 3, 32381778),
            exe: "/usr/bin/ls — ünïcode".into(),
            state: PS_FROZEN,
            count: 1_234_567,
            train_count: 1_000_000,
            last_mod_count: 4321,
            sequences: 98_765,
            anomalies: 17,
            normal_time: 1_900_000_000_123_456_789,
            identity: Some(crate::identity::Identity {
                sha256: crate::identity::Digest::of(b"ls"),
                script_sha256: None,
            }),
            life: Life {
                novelty: 4000,
                runs: 77,
                last_new_time: 1_800_000_000_000_000_001,
                budget_time: 1_800_000_000_000_000_002,
                budget: 3,
                pending: 5,
                repeat_runs: 2,
            },
            ..Profile::default()
        };
        p.train.rows.insert(0, row(&[(0, 0x01), (511, 0xff)]));
        p.train.rows.insert(1, row(&[(1, 0x80), (257, 0x3c)]));
        p.train.rows.insert(59, row(&[(511, 0xff), (12, 0x02)]));
        p.train.rows.insert(511, row(&[(59, 0x01)]));
        p.test.rows.insert(3, row(&[(4, 0x10)]));
        p.test.rows.insert(510, row(&[(0, 0xaa), (510, 0x55)]));
        p
    }

    fn other() -> Profile {
        let mut p = sample();
        p.key = ProfileKey::file((254 << 20) | 1, 42);
        p.exe = "/usr/bin/cat".into();
        p
    }

    /// Recomputes the trailing checksum after a test edits the body.
    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }

    /// Offset of the identity's digest count in `encode(p)`.
    fn identity_offset(p: &Profile) -> usize {
        HEADER_BYTES + 4 + p.exe.len()
    }

    /// Offset of the train table's row count in `encode(p)`.
    /// Offset of the script block (version 4 on) in `encode(p)`.
    fn script_offset(p: &Profile) -> usize {
        let digests = p
            .identity
            .map_or(0, |id| 1 + usize::from(id.script_sha256.is_some()));
        identity_offset(p) + 1 + 32 * digests
    }

    /// Offset of the train table's row count in `encode(p)`.
    fn train_offset(p: &Profile) -> usize {
        script_offset(p) + SCRIPT_BYTES + p.script.len()
    }

    /// `encode(p)` without its script block, as version 3 wrote it (`p` must have none).
    fn encode_v3(p: &Profile) -> Vec<u8> {
        assert!(!p.key.is_script() && p.owner == 0 && p.script.is_empty());
        let mut bytes = encode(p);
        bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
        bytes.drain(script_offset(p)..train_offset(p));
        reseal(&mut bytes);
        bytes
    }

    /// A script profile of bash, made by uid 1000.
    fn script_sample() -> Profile {
        let mut p = sample();
        p.key = ProfileKey::file((259 << 20) | 3, 1234).with_script(0xfeed_f00d);
        p.exe = "/usr/bin/bash".into();
        p.script = "/home/u/x.sh".into();
        p.owner = 1000;
        p
    }

    #[test]
    fn a_script_profile_round_trips_with_its_script_and_owner() {
        let p = script_sample();
        let back = decode(&encode(&p)).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.key.script, 0xfeed_f00d);
        assert_eq!((back.script.as_str(), back.owner), ("/home/u/x.sh", 1000));
        assert_eq!(file_name(&p.key), "66307-1234-00000000feedf00d.prof");
        let anon = ProfileKey::anonymous(65534, 0xabc);
        assert_eq!(file_name(&anon), "anon-65534-0000000000000abc.prof");
        let mut bad = encode(&p);
        let at = script_offset(&p) + SCRIPT_BYTES;
        bad[at] = 0xff;
        reseal(&mut bad);
        assert_eq!(decode(&bad), Err(FormatError::ScriptNotUtf8));
    }

    #[test]
    fn version_3_files_are_still_read() {
        let p = sample();
        let v3 = encode_v3(&p);
        assert_eq!(decode(&v3).unwrap(), p);
        assert_eq!(encode(&decode(&v3).unwrap()), encode(&p));
    }

    #[test]
    fn a_format_1_directory_is_upgraded_and_its_profiles_kept() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("profiles")).unwrap();
        fs::write(tmp.path().join("format"), "1\n").unwrap();
        let p = sample();
        let file = tmp.path().join("profiles").join(file_name(&p.key));
        fs::write(&file, encode_v3(&p)).unwrap();
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("format")).unwrap(),
            format!("{STORE_FORMAT}\n")
        );
        let loaded = store.load_all();
        assert!(loaded.set_aside.is_empty(), "{:?}", loaded.set_aside);
        assert_eq!(loaded.profiles, vec![p.clone()]);
        // The next save rewrites it in the current format.
        assert_eq!(store.save_all(std::slice::from_ref(&p)).saved, 1);
        assert_eq!(fs::read(&file).unwrap(), encode(&p));
    }

    fn temp_names(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| is_temp_name(n))
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn realistic_profile_round_trips() {
        let p = sample();
        let bytes = encode(&p);
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(
            bytes.len(),
            HEADER_BYTES
                + 4
                + p.exe.len()
                + 1
                + 32
                + SCRIPT_BYTES
                + 4
                + 4 * ROW_BYTES
                + 4
                + 2 * ROW_BYTES
                + 4
        );
        let back = decode(&bytes).unwrap();
        assert_eq!(back.key, p.key);
        assert_eq!(back.exe, p.exe);
        assert_eq!(back.identity, p.identity);
        assert_eq!(back.state, p.state);
        assert_eq!(back.count, p.count);
        assert_eq!(back.train_count, p.train_count);
        assert_eq!(back.last_mod_count, p.last_mod_count);
        assert_eq!(back.sequences, p.sequences);
        assert_eq!(back.anomalies, p.anomalies);
        assert_eq!(back.normal_time, p.normal_time);
        assert_eq!(back.train, p.train);
        assert_eq!(back.test, p.test);
        assert_eq!(back, p);
        // Canonical: encoding what was decoded gives the same bytes.
        assert_eq!(encode(&back), bytes);
    }

    #[test]
    fn empty_profile_round_trips() {
        let p = Profile::default();
        let bytes = encode(&p);
        assert_eq!(bytes.len(), HEADER_BYTES + 4 + 1 + SCRIPT_BYTES + 4 + 4 + 4);
        assert_eq!(decode(&bytes).unwrap(), p);

        let mut p = sample();
        p.train = Table::default();
        p.test = Table::default();
        assert_eq!(decode(&encode(&p)).unwrap(), p);
    }

    #[test]
    fn zero_rows_are_not_written() {
        let mut p = sample();
        p.train.rows.insert(7, row(&[]));
        p.test.rows.insert(8, row(&[]));
        let bytes = encode(&p);
        assert_eq!(bytes, encode(&sample()));
        let mut compacted = p.clone();
        compacted.train.compact();
        compacted.test.compact();
        assert_eq!(decode(&bytes).unwrap(), compacted);
    }

    #[test]
    fn a_zero_row_in_a_file_is_dropped_on_read() {
        let mut p = sample();
        p.test = Table::default();
        let mut bytes = encode(&p);
        // Append one all-zero test row by hand (symbol 9), as a foreign writer might.
        let n = bytes.len() - 4;
        bytes[n - 4..n].copy_from_slice(&1u32.to_le_bytes());
        bytes.truncate(n);
        bytes.extend_from_slice(&9u16.to_le_bytes());
        bytes.extend_from_slice(&[0u8; NSYMBOLS]);
        bytes.extend_from_slice(&[0u8; 4]);
        reseal(&mut bytes);
        assert_eq!(decode(&bytes).unwrap(), p);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            match decode(&bytes[..len]) {
                Err(FormatError::Truncated(_)) => {}
                other => panic!("prefix of {len} bytes gave {other:?}"),
            }
        }
        assert_eq!(
            decode(&bytes[..3]).unwrap_err().to_string(),
            "truncated: the file ends inside the header"
        );
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).unwrap_err().to_string(),
            "truncated: the file ends inside the checksum"
        );
    }

    #[test]
    fn every_flipped_byte_is_an_error_and_data_bytes_fail_the_checksum() {
        let p = sample();
        let bytes = encode(&p);
        let exe_len_at = HEADER_BYTES..HEADER_BYTES + 4;
        let train = train_offset(&p);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x04;
            let err = decode(&damaged).expect_err(&format!("flip at {i} went unnoticed"));
            // Bytes that only carry data (not magic, version or lengths) must trip the checksum.
            let is_version = i < 12;
            let script_len_at = script_offset(&p) + 12;
            let is_length = exe_len_at.contains(&i)
                || (script_len_at..script_len_at + 4).contains(&i)
                || i == identity_offset(&p)
                || (train..train + 4).contains(&i);
            let is_row_count = {
                let test = train + 4 + p.train.rows.len() * ROW_BYTES;
                (test..test + 4).contains(&i)
            };
            if !(is_version || is_length || is_row_count) {
                assert!(
                    matches!(err, FormatError::Checksum { .. }),
                    "flip at {i} gave {err:?}"
                );
            }
        }
        let mut damaged = bytes.clone();
        damaged[HEADER_BYTES - 1] ^= 1;
        assert!(decode(&damaged)
            .unwrap_err()
            .to_string()
            .starts_with("checksum mismatch"));
    }

    #[test]
    fn wrong_magic_is_not_a_profile() {
        let mut bytes = encode(&sample());
        bytes[0] = b'X';
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, FormatError::NotAProfile);
        assert!(err.to_string().starts_with("not an ebpfh profile"));
        assert_eq!(decode(b"#!/bin/sh\n"), Err(FormatError::NotAProfile));
        assert_eq!(decode(b"ELF"), Err(FormatError::NotAProfile));
    }

    #[test]
    fn a_version_2_profile_is_read_with_a_fresh_lifecycle_block() {
        let p = sample();
        let mut bytes = encode_v3(&p);
        // Version 2 is version 3 without the 40-byte lifecycle block after the six counters.
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        bytes.drain(HEADER_BYTES - LIFE_BYTES..HEADER_BYTES);
        reseal(&mut bytes);
        let read = decode(&bytes).unwrap();
        assert_eq!(
            read.life,
            Life {
                novelty: NOVELTY_ONE,
                last_new_time: p.normal_time,
                ..Life::default()
            }
        );
        assert_eq!(
            (read.count, read.state, &read.exe),
            (p.count, p.state, &p.exe)
        );
        assert_eq!(read.identity, p.identity);
        assert!(read.train == p.train && read.test == p.test);
        // Written back, it is the current version.
        assert_eq!(encode(&read)[8..12], FILE_FORMAT.to_le_bytes());
    }

    #[test]
    fn newer_and_unknown_versions_are_refused() {
        let mut bytes = encode(&sample());
        bytes[8..12].copy_from_slice(&5u32.to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, FormatError::Newer(5));
        assert!(err
            .to_string()
            .starts_with("written by a newer ebpfh (format 5"));
        // A newer format may have any layout, so it is refused before anything else is read.
        assert_eq!(
            decode(&bytes[..12]).unwrap_err(),
            FormatError::Newer(5),
            "version must be checked before the rest"
        );
        bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode(&bytes), Err(FormatError::UnknownVersion(0)));
    }

    #[test]
    fn rows_out_of_order_or_range_are_refused() {
        let p = sample();
        let at = train_offset(&p) + 4;
        let set_symbol = |bytes: &mut Vec<u8>, index: usize, symbol: u16| {
            let o = at + index * ROW_BYTES;
            bytes[o..o + 2].copy_from_slice(&symbol.to_le_bytes());
            reseal(bytes);
        };
        // Train symbols are 0, 1, 59, 511.
        let mut bytes = encode(&p);
        set_symbol(&mut bytes, 1, 60);
        assert_eq!(
            decode(&bytes),
            Err(FormatError::SymbolOrder {
                table: "train",
                previous: 60,
                symbol: 59
            })
        );
        let mut bytes = encode(&p);
        set_symbol(&mut bytes, 1, 0);
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the train table's rows are out of order (symbol 0 follows 0)"
        );
        let mut bytes = encode(&p);
        set_symbol(&mut bytes, 3, 512);
        assert_eq!(
            decode(&bytes),
            Err(FormatError::SymbolRange {
                table: "train",
                symbol: 512
            })
        );
    }

    /// A file written before profiles carried a content identity still loads, without one, and is
    /// written back in the current format.
    #[test]
    fn version_1_files_are_still_read() {
        let mut p = sample();
        p.identity = None;
        // Version 1 is version 3 without the digest count byte and the lifecycle block.
        let mut v1 = encode_v3(&p);
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        v1.remove(identity_offset(&p));
        v1.drain(HEADER_BYTES - LIFE_BYTES..HEADER_BYTES);
        reseal(&mut v1);
        p.life = Life {
            novelty: NOVELTY_ONE,
            last_new_time: p.normal_time,
            ..Life::default()
        };
        assert_eq!(decode(&v1).unwrap(), p);
        assert_eq!(encode(&decode(&v1).unwrap()), encode(&p));
        // Truncation inside a version 1 file is still named.
        assert!(matches!(
            decode(&v1[..v1.len() - 1]),
            Err(FormatError::Truncated("checksum"))
        ));
    }

    #[test]
    fn script_identities_round_trip_and_too_many_digests_are_refused() {
        let mut p = sample();
        p.identity = Some(crate::identity::Identity {
            sha256: crate::identity::Digest::of(b"bash"),
            script_sha256: Some(crate::identity::Digest::of(b"backup.sh")),
        });
        let bytes = encode(&p);
        assert_eq!(decode(&bytes).unwrap(), p);
        let mut bad = bytes.clone();
        bad[identity_offset(&p)] = 3;
        // The third digest is not read, so the rest is misaligned: refused either way.
        assert!(decode(&bad).is_err());
        let p = Profile::default();
        let mut bytes = encode(&p);
        let at = identity_offset(&p);
        bytes[at] = 9;
        // 2 digests' worth of bytes follow, then the tables: structure first, then the count.
        bytes.splice(at + 1..at + 1, [0u8; 64]);
        reseal(&mut bytes);
        assert_eq!(decode(&bytes), Err(FormatError::Digests(9)));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&sample());
        bytes.extend_from_slice(b"xyz");
        assert_eq!(decode(&bytes), Err(FormatError::TrailingBytes(3)));
    }

    #[test]
    fn bad_exe_and_state_are_refused() {
        let mut p = sample();
        p.exe = "/bin/abc".into();
        let mut bytes = encode(&p);
        bytes[HEADER_BYTES + 4] = 0xff;
        reseal(&mut bytes);
        assert_eq!(decode(&bytes), Err(FormatError::ExeNotUtf8));

        let mut bytes = encode(&p);
        // The state follows magic (8), version (4) and key (16).
        bytes[28..32].copy_from_slice(&0x10u32.to_le_bytes());
        reseal(&mut bytes);
        assert_eq!(decode(&bytes), Err(FormatError::UnknownState(0x10)));

        // A path longer than PATH_MAX, written by hand.
        let mut bytes = encode(&Profile::default());
        let tail = bytes.split_off(HEADER_BYTES);
        bytes.extend_from_slice(&((MAX_EXE + 1) as u32).to_le_bytes());
        bytes.extend_from_slice("a".repeat(MAX_EXE + 1).as_bytes());
        bytes.extend_from_slice(&tail[4..]);
        reseal(&mut bytes);
        assert_eq!(decode(&bytes), Err(FormatError::ExeTooLong(MAX_EXE + 1)));
    }

    #[test]
    fn an_overlong_exe_is_clipped_on_a_character_boundary() {
        let p = Profile {
            exe: format!("/{}", "é".repeat(MAX_EXE)),
            ..Profile::default()
        };
        let back = decode(&encode(&p)).unwrap();
        assert!(back.exe.len() <= MAX_EXE && back.exe.len() >= MAX_EXE - 1);
        assert!(p.exe.starts_with(&back.exe));
    }

    #[test]
    fn open_creates_the_layout_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.dir(), dir);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("profiles")), 0o700);
        assert_eq!(fs::read_to_string(dir.join("format")).unwrap(), "2\n");
        assert!(temp_names(&dir).is_empty());
        // Opening again accepts what it made.
        Store::open(&dir).unwrap();
    }

    #[test]
    fn open_refuses_a_newer_or_foreign_store() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("format"), "3\n").unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::FormatNewer { found: 3, .. }));
        assert!(err.to_string().contains("newer ebpfh (store format 3"));
        assert!(
            !tmp.path().join("profiles").exists(),
            "touched a newer store"
        );

        fs::write(tmp.path().join("format"), "hello\n").unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::FormatUnknown { .. }));
        assert!(err.to_string().contains("does not hold a store format"));

        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        let err = Store::open(&file).unwrap_err();
        assert!(err
            .to_string()
            .starts_with(&format!("cannot create the directory '{}'", file.display())));
    }

    #[test]
    fn save_then_load_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let (a, b) = (sample(), other());
        store.save(&a).unwrap();
        store.save(&b).unwrap();
        let path = tmp.path().join("profiles/66307-32381778.prof");
        assert_eq!(store.path_of(&a.key), path);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), encode(&a));
        assert!(temp_names(&tmp.path().join("profiles")).is_empty());

        let loaded = Store::open(tmp.path()).unwrap().load_all();
        assert!(loaded.set_aside.is_empty());
        let mut expected = vec![a, b];
        expected.sort_by_key(|p| p.key);
        assert_eq!(loaded.profiles, expected);
    }

    #[test]
    fn load_all_quarantines_bad_files_and_keeps_the_good() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let good = sample();
        store.save(&good).unwrap();
        let profiles = tmp.path().join("profiles");
        let bad = profiles.join("1-2.prof");
        let mut damaged = encode(&other());
        damaged[HEADER_BYTES + 10] ^= 0xff;
        fs::write(&bad, &damaged).unwrap();
        // Well-formed, but under another profile's name.
        let misnamed = profiles.join("1-3.prof");
        fs::write(&misnamed, encode(&other())).unwrap();

        let report = Store::open(tmp.path()).unwrap().load_all();
        assert_eq!(report.profiles, vec![good]);
        assert_eq!(report.set_aside.len(), 2);
        assert_eq!(report.set_aside[0].0, bad);
        assert!(report.set_aside[0].1.starts_with("checksum mismatch"));
        assert_eq!(report.set_aside[1].0, misnamed);
        assert_eq!(
            report.set_aside[1].1,
            "it holds profile 65025:42, whose file is named '65025-42.prof'"
        );

        assert!(!bad.exists() && !misnamed.exists());
        let quarantine = tmp.path().join("quarantine");
        assert_eq!(mode(&quarantine), 0o700);
        let mut moved: Vec<String> = fs::read_dir(&quarantine)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        moved.sort();
        assert_eq!(moved.len(), 2);
        assert!(moved[0].starts_with("1-2.prof."), "{moved:?}");
        assert!(moved[1].starts_with("1-3.prof."), "{moved:?}");
        assert_eq!(fs::read(quarantine.join(&moved[0])).unwrap(), damaged);

        // A second casualty with the same name in the same second does not replace the first.
        fs::write(&bad, b"junk").unwrap();
        let report = store.load_all();
        assert_eq!(report.set_aside.len(), 1);
        assert!(report.set_aside[0].1.starts_with("not an ebpfh profile"));
        assert_eq!(fs::read_dir(&quarantine).unwrap().count(), 3);
    }

    #[test]
    fn load_all_sets_aside_what_is_not_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let profiles = tmp.path().join("profiles");
        fs::create_dir(profiles.join("5-5.prof")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", profiles.join("6-6.prof")).unwrap();
        let report = store.load_all();
        assert!(report.profiles.is_empty());
        let reasons: Vec<&str> = report.set_aside.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(reasons.len(), 2);
        assert_eq!(reasons[0], "not a regular file");
        assert!(reasons[1].starts_with("cannot open it"), "{reasons:?}");
    }

    #[test]
    fn load_all_removes_leftover_temporaries_and_ignores_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store.save(&sample()).unwrap();
        let profiles = tmp.path().join("profiles");
        let leftover = profiles.join(".66307-32381778.prof.tmp.999999");
        fs::write(&leftover, b"half a profile").unwrap();
        let readme = profiles.join("README");
        fs::write(&readme, b"hello").unwrap();

        let report = store.load_all();
        assert_eq!(report.profiles, vec![sample()]);
        assert!(report.set_aside.is_empty());
        assert!(!leftover.exists());
        assert!(readme.exists());
        assert!(!tmp.path().join("quarantine").exists());
    }

    #[test]
    fn a_failed_save_keeps_the_previous_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let old = sample();
        store.save(&old).unwrap();
        let target = store.path_of(&old.key);

        // Something the temporary file cannot replace (works as root, unlike a read-only
        // directory): a non-empty directory at its name.
        let tmpname = tmp.path().join(format!(
            "profiles/.66307-32381778.prof.tmp.{}",
            std::process::id()
        ));
        fs::create_dir(&tmpname).unwrap();
        fs::write(tmpname.join("x"), b"").unwrap();
        let mut new = old.clone();
        new.count += 1;
        let err = store.save(&new).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot save the profile '{}'", target.display())),
            "{err}"
        );
        assert_eq!(fs::read(&target).unwrap(), encode(&old));
        fs::remove_dir_all(&tmpname).unwrap();

        // The rename itself failing: the target is a directory; the temporary must not linger.
        let key = ProfileKey::file(7, 7);
        fs::create_dir(store.path_of(&key)).unwrap();
        fs::write(store.path_of(&key).join("x"), b"").unwrap();
        let err = store
            .save(&Profile {
                key,
                ..Profile::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains(": cannot rename '"), "{err}");
        assert!(temp_names(&tmp.path().join("profiles")).is_empty());

        // And the failed profile is retried, not assumed saved.
        assert_eq!(store.save_all(&[new.clone()]).saved, 1);
        assert_eq!(fs::read(&target).unwrap(), encode(&new));
    }

    #[test]
    fn save_all_skips_unchanged_profiles() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut profiles = vec![sample(), other()];
        let report = store.save_all(&profiles);
        assert_eq!((report.saved, report.unchanged), (2, 0));
        assert!(report.failed.is_empty());
        let ino = |p: &Profile| fs::metadata(store.path_of(&p.key)).unwrap().ino();
        let before: Vec<u64> = profiles.iter().map(ino).collect();

        let report = store.save_all(&profiles);
        assert_eq!((report.saved, report.unchanged), (0, 2));
        assert_eq!(profiles.iter().map(ino).collect::<Vec<_>>(), before);

        profiles[1].anomalies += 1;
        let report = store.save_all(&profiles);
        assert_eq!((report.saved, report.unchanged), (1, 1));
        assert_eq!(ino(&profiles[0]), before[0]);
        assert_ne!(ino(&profiles[1]), before[1]);
        assert!(temp_names(&tmp.path().join("profiles")).is_empty());

        // What a fresh store loaded counts as written.
        let fresh = Store::open(tmp.path()).unwrap();
        let loaded = fresh.load_all().profiles;
        let report = fresh.save_all(&loaded);
        assert_eq!((report.saved, report.unchanged), (0, 2));
    }

    #[test]
    fn a_deleted_file_is_rewritten_at_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = sample_for_rewrite();
        assert_eq!(store.save_all(std::slice::from_ref(&p)).saved, 1);
        fs::remove_file(store.path_of(&p.key)).unwrap();
        let report = store.save_all(std::slice::from_ref(&p));
        assert_eq!((report.saved, report.unchanged), (1, 0));
        assert!(store.path_of(&p.key).exists());
    }

    fn sample_for_rewrite() -> Profile {
        Profile {
            key: ProfileKey::file(8 << 20, 77),
            exe: "/bin/x".into(),
            ..Profile::default()
        }
    }

    #[test]
    fn save_all_reports_each_failure_and_saves_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let blocked = other();
        let target = store.path_of(&blocked.key);
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"").unwrap();
        let report = store.save_all(&[sample(), blocked]);
        assert_eq!(report.saved, 1);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, target);
        assert!(report.failed[0].1.starts_with("cannot rename"));
    }

    #[test]
    fn a_full_disk_is_named_as_such() {
        let path = Path::new("/var/lib/ebpfh/profiles/1-2.prof");
        for e in [
            io::Error::from_raw_os_error(libc::ENOSPC),
            io::Error::from_raw_os_error(libc::EDQUOT),
            io::Error::from(io::Error::from_raw_os_error(28).kind()),
        ] {
            assert!(is_disk_full(&e), "{e:?}");
            let step = explain(e, "write", Path::new("/x/.1-2.prof.tmp.1"));
            let full = save_error(path, &step);
            assert_eq!(
                full.to_string(),
                "cannot save the profile '/var/lib/ebpfh/profiles/1-2.prof': the disk is full; \
                 free some space on it (any earlier copy is kept)"
            );
        }
        let other = explain(
            io::Error::from_raw_os_error(libc::EACCES),
            "create",
            Path::new("/x/t"),
        );
        assert!(!is_disk_full(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(other.to_string().starts_with("cannot create '/x/t': "));
    }

    #[test]
    fn a_real_enospc_goes_through_the_same_path() {
        // /dev/full fails every write with ENOSPC, as a full filesystem would.
        let Ok(mut full) = OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let err = write_synced(&mut full, &encode(&sample()), Path::new("/dev/full")).unwrap_err();
        assert!(err.to_string().starts_with("the disk is full"), "{err}");
    }

    /// The end-to-end full-disk case needs a filesystem that can be filled, which takes root:
    /// `mount -t tmpfs -o size=600k tmpfs /mnt/small && EBPFH_SMALL_FS=/mnt/small cargo test
    /// --lib store -- --ignored`.
    #[test]
    #[ignore = "needs a small filesystem in EBPFH_SMALL_FS"]
    fn a_full_disk_keeps_the_previous_file() {
        let Some(small) = std::env::var_os("EBPFH_SMALL_FS") else {
            return;
        };
        let dir = tempfile::tempdir_in(small).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = other();
        store.save(&old).unwrap();
        let target = store.path_of(&old.key);

        let filler = dir.path().join("filler");
        let mut f = File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
        let _ = f.sync_all();

        let mut new = old.clone();
        for s in 0..NSYMBOLS as u16 {
            new.train.rows.insert(s, row(&[(0, 1)]));
        }
        let err = store.save(&new).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot save the profile '{}': the disk is full; free some space on it (any \
                 earlier copy is kept)",
                target.display()
            )
        );
        assert_eq!(fs::read(&target).unwrap(), encode(&old));
        assert!(temp_names(&dir.path().join("profiles")).is_empty());
        let report = store.save_all(&[new.clone()]);
        assert!(report.failed[0].1.starts_with("the disk is full"));

        drop(f);
        fs::remove_file(&filler).unwrap();
        store.save(&new).unwrap();
        assert_eq!(fs::read(&target).unwrap(), encode(&new));
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let lock = store.lock().unwrap();
        let pid = std::process::id();
        assert_eq!(
            fs::read_to_string(tmp.path().join("lock")).unwrap(),
            format!("{pid}\n")
        );
        assert_eq!(mode(&tmp.path().join("lock")), 0o600);

        let err = Store::open(tmp.path()).unwrap().lock().unwrap_err();
        assert!(matches!(err, StoreError::Locked { pid: Some(p), .. } if p == pid));
        assert_eq!(
            err.to_string(),
            format!(
                "another ebpfh monitor (pid {pid}) is using '{}'; stop it or pass --state-dir",
                tmp.path().display()
            )
        );

        drop(lock);
        assert_eq!(fs::read(tmp.path().join("lock")).unwrap(), b"");
        let again = store.lock().unwrap();
        drop(again);
    }

    #[test]
    fn a_lock_without_a_readable_pid_still_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let lock = store.lock().unwrap();
        fs::write(tmp.path().join("lock"), b"garbage").unwrap();
        let err = store.lock().unwrap_err();
        assert!(err
            .to_string()
            .starts_with("another ebpfh monitor is using"));
        drop(lock);
    }
}
