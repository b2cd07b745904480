//! Content identity: the SHA-256 of an executable's bytes.
//!
//! A profile's key (`dev:ino`) means nothing on another host, or on this one after a package
//! upgrade reinstalls the same bytes at a new inode. The digest of the file's contents means the
//! same everywhere, so bundles (`src/bundle.rs`) name profiles by it.
//!
//! The monitor hashes a file once, when the kernel reports a new profile, never on the hot path
//! and never on its event loop (`src/hasher.rs`); offline commands use [`Cache`], which remembers
//! each digest by `dev:ino` together with the file's mtime and size, so a file rewritten in place
//! is hashed again.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::profile::ProfileKey;

/// A SHA-256 digest; prints and parses as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of everything `r` yields.
    pub fn of_reader(r: &mut impl io::Read) -> io::Result<Digest> {
        let mut h = Sha256::new();
        io::copy(r, &mut h)?;
        Ok(Digest(h.finalize().into()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(s, &mut out) {
            Ok(()) if s.bytes().all(|b| !b.is_ascii_uppercase()) => Ok(Digest(out)),
            _ => Err(format!(
                "'{s}' is not a SHA-256 digest (64 lowercase hex digits)"
            )),
        }
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a profile is the profile of, independent of the host: the executable's digest and, for a
/// profile of a script run by an interpreter, the script's digest too.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Identity {
    /// SHA-256 of the executable's bytes.
    pub sha256: Digest,
    /// SHA-256 of the script's bytes, for a per-script profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_sha256: Option<Digest>,
}

impl Identity {
    pub fn exe(sha256: Digest) -> Identity {
        Identity {
            sha256,
            script_sha256: None,
        }
    }
}

/// Prints as the executable's digest, then `+` and the script's for a script profile.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.sha256)?;
        if let Some(s) = &self.script_sha256 {
            write!(f, "+{s}")?;
        }
        Ok(())
    }
}

/// A file's version as far as hashing cares: a rewrite in place changes one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    mtime_ns: i128,
    size: u64,
}

impl Stamp {
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            size: m.size(),
        }
    }
}

/// Digests by `dev:ino`, valid while the file's mtime and size stay the same.
#[derive(Debug, Default)]
pub struct Cache {
    known: HashMap<ProfileKey, (Stamp, Digest)>,
}

impl Cache {
    /// The digest of the file with key `key`, read through the first of `paths` that opens and
    /// is that very inode (so a path that now names another file is never hashed in its place).
    /// `None` when none of them is.
    pub fn digest(&mut self, key: ProfileKey, paths: &[&Path]) -> Option<Digest> {
        for path in paths {
            let Ok(mut file) = open(path) else {
                continue;
            };
            let Ok(meta) = file.metadata() else {
                continue;
            };
            if !meta.is_file() || ProfileKey::from_stat(meta.dev(), meta.ino()) != key {
                continue;
            }
            let before = Stamp::of(&meta);
            if let Some((s, d)) = self.known.get(&key) {
                if *s == before {
                    return Some(*d);
                }
            }
            let Ok(digest) = Digest::of_reader(&mut file) else {
                continue;
            };
            // A file written while it was read has no single digest: report none, cache none.
            match file.metadata().map(|m| Stamp::of(&m)) {
                Ok(after) if after == before => {
                    self.known.insert(key, (before, digest));
                    return Some(digest);
                }
                _ => continue,
            }
        }
        None
    }
}

/// Opens `path` for reading without blocking: a FIFO planted at an executable's path must not
/// hang the monitor.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

/// The digest of the file at `path` (following symlinks), with its key.
pub fn digest_file(path: &Path) -> io::Result<(ProfileKey, Digest)> {
    let mut file = open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let key = ProfileKey::from_stat(meta.dev(), meta.ino());
    Ok((key, Digest::of_reader(&mut file)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn digests_match_known_values_and_round_trip() {
        // FIPS 180-2's "abc" example.
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        assert_eq!(
            serde_json::from_str::<Digest>(&format!("\"{d}\"")).unwrap(),
            d
        );
        assert!("abc".parse::<Digest>().is_err());
        assert!(d.to_string().to_uppercase().parse::<Digest>().is_err());
        assert!(format!("{d}00").parse::<Digest>().is_err());
    }

    #[test]
    fn the_cache_hashes_the_named_inode_once_and_again_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::write(&path, b"first contents").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let key = ProfileKey::from_stat(meta.dev(), meta.ino());
        let mut cache = Cache::default();
        let first = cache.digest(key, &[&path]).unwrap();
        assert_eq!(first, Digest::of(b"first contents"));
        assert_eq!(digest_file(&path).unwrap(), (key, first));

        // Same inode, new bytes of another size: hashed again.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b" and more").unwrap();
        drop(f);
        assert_eq!(
            cache.digest(key, &[&path]),
            Some(Digest::of(b"first contents and more"))
        );

        // A path naming another inode is skipped, and the next candidate is used.
        let other = dir.path().join("other");
        std::fs::write(&other, b"other").unwrap();
        assert_eq!(cache.digest(key, &[&other]), None);
        assert_eq!(
            cache.digest(key, &[&other, Path::new("/nonexistent"), &path]),
            Some(Digest::of(b"first contents and more"))
        );
    }

    #[test]
    fn identities_print_both_digests() {
        let id = Identity {
            sha256: Digest::of(b"bash"),
            script_sha256: Some(Digest::of(b"x.sh")),
        };
        assert_eq!(
            id.to_string(),
            format!("{}+{}", Digest::of(b"bash"), Digest::of(b"x.sh"))
        );
        let json = serde_json::to_string(&Identity::exe(Digest::of(b"ls"))).unwrap();
        assert_eq!(json, format!("{{\"sha256\":\"{}\"}}", Digest::of(b"ls")));
    }
}
