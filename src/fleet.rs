//! `ebpfh profile export|import` on a state directory (offline), and what a running monitor shares
//! with it: finding the local executable for a bundle's profile, and pending imports.
//!
//! A bundle's profile goes, on this host, into every profile with the same content identity; else
//! into a new profile for the file at one of its paths if that file has the same bytes; else it is
//! kept in `STATE_DIR/imports/` (one single-profile bundle per identity) and applied when an
//! executable with that identity first runs (on its `profile_created`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{self, Body, Entry, ImportAs, Source};
use crate::identity::{self, Identity};
use crate::profile::{Profile, ProfileKey, State};
use crate::settings::Settings;
use crate::store::Store;

/// Pending imports, inside the state directory.
pub const IMPORTS: &str = "imports";
const SUFFIX: &str = ".bundle";

/// What an import did with one profile of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `merged` (into a profile this host had), `created` (a new profile for an executable at
    /// one of the bundle's paths) or `pending` (kept until the executable first runs).
    pub result: String,
    pub sha256: identity::Digest,
    pub exe: String,
    /// The local profile (`DEV:INODE`), unless pending.
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub profile_state: Option<State>,
}

impl Outcome {
    pub fn applied(result: &str, p: &Profile) -> Outcome {
        Outcome {
            result: result.into(),
            sha256: p.identity.map(|i| i.sha256).unwrap_or_default(),
            exe: p.exe.clone(),
            profile: Some(p.key.to_string()),
            profile_state: Some(p.state()),
        }
    }

    pub fn pending(e: &Entry) -> Outcome {
        Outcome {
            result: "pending".into(),
            sha256: e.identity.sha256,
            exe: e.path().to_string(),
            profile: None,
            profile_state: None,
        }
    }
}

/// The executable on this host at one of the entry's paths whose bytes are the entry's: its key
/// and path.
pub fn find_local(e: &Entry) -> Option<(ProfileKey, String)> {
    if e.identity.script_sha256.is_some() {
        return None;
    }
    e.paths.iter().find_map(|path| {
        let (key, digest) = identity::digest_file(Path::new(path)).ok()?;
        (digest == e.identity.sha256).then(|| (key, path.clone()))
    })
}

/// What is kept for an executable that has not run yet: applied with the bundle's state when it
/// does (the host has nothing of its own to be stricter with), so `--as normal` is applied now.
pub fn pending_form(e: &Entry, how: ImportAs) -> Entry {
    match how {
        ImportAs::Normal => e.normalized(),
        ImportAs::Stricter | ImportAs::Bundle => e.clone(),
    }
}

/// Pending imports: `STATE_DIR/imports/<identity>.bundle`.
#[derive(Debug)]
pub struct Pending {
    dir: PathBuf,
    entries: BTreeMap<Identity, Entry>,
}

impl Pending {
    /// Reads the pending imports; a file that is not a good bundle is logged and left alone.
    pub fn open(state_dir: &Path) -> Pending {
        let dir = state_dir.join(IMPORTS);
        let mut entries = BTreeMap::new();
        if let Ok(list) = std::fs::read_dir(&dir) {
            for f in list.flatten() {
                let path = f.path();
                if !path.to_string_lossy().ends_with(SUFFIX) {
                    continue;
                }
                match Body::read(&path) {
                    Ok(body) => {
                        for e in body.profiles {
                            entries.insert(e.identity, e);
                        }
                    }
                    Err(e) => {
                        log::warn!("the pending import '{}' {e}; ignoring it", path.display())
                    }
                }
            }
        }
        Pending { dir, entries }
    }

    pub fn get(&self, id: &Identity) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn file(&self, id: &Identity) -> String {
        format!("{id}{SUFFIX}")
    }

    /// Keeps `e` (joined with what is already pending for its identity), on disk first.
    pub fn keep(&mut self, e: Entry, host: &str) -> Result<(), String> {
        let e = match self.entries.get(&e.identity) {
            Some(have) => have.join(&e),
            None => e,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .and_then(|()| {
                crate::store::write_atomic(
                    &self.dir,
                    &self.file(&e.identity),
                    &Body::new(host, [e.clone()]).encode(),
                )
            })
            .map_err(|err| {
                format!(
                    "cannot keep the profile of {} for later in '{}': {err}",
                    e.path(),
                    self.dir.display()
                )
            })?;
        self.entries.insert(e.identity, e);
        Ok(())
    }

    /// Forgets the pending import of `id`, once it is applied.
    pub fn done(&mut self, id: &Identity) {
        if self.entries.remove(id).is_some() {
            let path = self.dir.join(self.file(id));
            if let Err(e) = std::fs::remove_file(&path) {
                log::warn!("cannot remove the applied import '{}': {e}", path.display());
            }
        }
    }
}

use std::os::unix::fs::DirBuilderExt;

/// Opens and locks a state directory for an offline export or import.
fn open_offline(state_dir: &Path) -> Result<(Store, crate::store::StoreLock), String> {
    let store = Store::open(state_dir).map_err(|e| e.to_string())?;
    let lock = store.lock().map_err(|e| match e {
        crate::store::StoreError::Locked { .. } => {
            format!("{e}; or leave out --state-dir to go through the running monitor")
        }
        e => e.to_string(),
    })?;
    Ok((store, lock))
}

/// Profiles of a state directory, each with its identity (hashed now where the file lacks it
/// and the executable is still at its path).
fn load_identified(store: &Store) -> Vec<Profile> {
    let mut cache = identity::Cache::default();
    let mut profiles = store.load_all().profiles;
    for p in &mut profiles {
        if p.identity.is_none() && !p.exe.is_empty() {
            p.identity = cache.digest(p.key, &[Path::new(&p.exe)]).map(Identity::exe);
        }
    }
    profiles
}

/// Which profiles `names` picks: all for none; else by `DEV:INODE`, path or unique file name.
pub fn select<'a>(profiles: &'a [Profile], names: &[String]) -> Result<Vec<&'a Profile>, String> {
    if names.is_empty() {
        return Ok(profiles.iter().collect());
    }
    let mut out: Vec<&Profile> = Vec::new();
    for name in names {
        let by_key = name.parse::<ProfileKey>().ok();
        let exact: Vec<&Profile> = profiles
            .iter()
            .filter(|p| Some(p.key) == by_key || p.exe == *name)
            .collect();
        let found = if exact.is_empty() {
            profiles
                .iter()
                .filter(|p| {
                    Path::new(&p.exe)
                        .file_name()
                        .is_some_and(|f| f == name.as_str())
                })
                .collect()
        } else {
            exact
        };
        match found.as_slice() {
            [] => return Err(format!("no profile matches '{name}'")),
            [p] => out.push(p),
            many => {
                return Err(format!(
                    "'{name}' matches {} profiles; name one by its path or DEV:INODE key",
                    many.len()
                ))
            }
        }
    }
    out.sort_by_key(|p| p.key);
    out.dedup_by_key(|p| p.key);
    Ok(out)
}

/// The bundle entries of `profiles`; the second list names those left out for want of an
/// identity.
pub fn entries(profiles: &[&Profile], source: &Source) -> (Vec<Entry>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for p in profiles {
        match Entry::from_profile(p, source.clone()) {
            Some(e) => out.push(e),
            None => skipped.push(if p.exe.is_empty() {
                p.key.to_string()
            } else {
                p.exe.clone()
            }),
        }
    }
    (out, skipped)
}

/// `ebpfh profile export --state-dir DIR`: the bundle, and the profiles left out.
pub fn export_dir(
    state_dir: &Path,
    names: &[String],
    host: &str,
    settings: &Settings,
) -> Result<(Body, Vec<String>), String> {
    let (store, _lock) = open_offline(state_dir)?;
    let profiles = load_identified(&store);
    let chosen = select(&profiles, names)?;
    let (entries, skipped) = entries(&chosen, &Source::here(host, settings));
    Ok((Body::new(host, entries), skipped))
}

/// `ebpfh profile import --state-dir DIR`: see the module documentation. Each profile is written
/// atomically; an error stops the import after the profiles already written.
pub fn import_dir(
    state_dir: &Path,
    bodies: &[Body],
    how: ImportAs,
    host: &str,
) -> Result<Vec<Outcome>, String> {
    let (store, _lock) = open_offline(state_dir)?;
    let mut profiles = load_identified(&store);
    let mut pending = Pending::open(state_dir);
    let mut out = Vec::new();
    let incoming = bundle::merge_entries(bodies.iter().flat_map(|b| b.profiles.iter().cloned()));
    for e in &incoming {
        let mut applied = false;
        for p in profiles
            .iter_mut()
            .filter(|p| p.identity == Some(e.identity))
        {
            let merged = bundle::import_into(p, e, how);
            store.save(&merged).map_err(|err| err.to_string())?;
            out.push(Outcome::applied("merged", &merged));
            *p = merged;
            applied = true;
        }
        if applied {
            continue;
        }
        match find_local(e) {
            Some((key, path)) => {
                let created = match profiles.iter().find(|p| p.key == key) {
                    Some(have) => bundle::import_into(have, e, how),
                    None => bundle::new_profile(key, &path, e, how),
                };
                store.save(&created).map_err(|err| err.to_string())?;
                out.push(Outcome::applied("created", &created));
                profiles.push(created);
            }
            None => {
                pending.keep(pending_form(e, how), host)?;
                out.push(Outcome::pending(e));
            }
        }
    }
    Ok(out)
}
