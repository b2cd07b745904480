//! Directories only root can change, checked the way sshd's StrictModes checks `~/.ssh`.
//!
//! The monitor runs as root and writes its pid file, socket and profiles into its run and state
//! directories. If another user could write to one of them, or to any directory above it, that
//! user could swap a file or a whole directory for a symlink between our checks and our writes
//! (or plant a fake control socket for root's clients). So each directory, and every directory
//! above it up to `/`, must belong to root (or to the user running ebpfh) and be writable by no
//! one else.
//!
//! One exception: a directory *above* ours may be world-writable if it is sticky (like `/tmp`)
//! and the entry in it on our path belongs to root or us. In a sticky directory only an entry's
//! owner can rename or remove it, so nobody else can swap that entry; a name another user took
//! first belongs to them and is refused. The state or run directory itself is never allowed to be
//! writable by others, sticky or not. A symlink on the way must belong to root or us too.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a directory is not safe; the text is one sentence naming the directory and the fix.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeDir {
    #[error("cannot create the {what} '{}': {error}; check the permissions of its parent or choose another directory", dir.display())]
    Create {
        what: &'static str,
        dir: PathBuf,
        error: std::io::Error,
    },
    #[error("refusing the {what} '{}': '{}' belongs to uid {uid}, not root; use a directory that root owns all the way up to /", dir.display(), part.display())]
    Owner {
        what: &'static str,
        dir: PathBuf,
        part: PathBuf,
        uid: u32,
    },
    #[error("refusing the {what} '{}': '{}' can be written by other users (mode {mode:o}); use a directory that only root can write all the way up to /", dir.display(), part.display())]
    Writable {
        what: &'static str,
        dir: PathBuf,
        part: PathBuf,
        mode: u32,
    },
    #[error("refusing the {what} '{}': '{}' is not a directory", dir.display(), part.display())]
    NotADir {
        what: &'static str,
        dir: PathBuf,
        part: PathBuf,
    },
}

/// Creates `dir` (mode 0700) if it is missing, then checks it and every directory above it.
pub fn prepare(dir: &Path, what: &'static str) -> Result<(), UnsafeDir> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| UnsafeDir::Create {
            what,
            dir: dir.to_owned(),
            error,
        })?;
    check(dir, what)
}

/// Checks that `dir` and each directory above it belong to root or to us and that no one else
/// can write to them (see the module comment for sticky directories above ours). Symlinks on the
/// way must belong to root or to us; the directories they lead to are checked like any other.
pub fn check(dir: &Path, what: &'static str) -> Result<(), UnsafeDir> {
    let me = nix::unistd::geteuid().as_raw();
    let given = std::path::absolute(dir).map_err(|error| UnsafeDir::Create {
        what,
        dir: dir.to_owned(),
        error,
    })?;
    for part in given.ancestors() {
        if let Ok(meta) = fs::symlink_metadata(part) {
            if !meta.file_type().is_symlink() {
                continue;
            }
            check_owner(dir, part, what, me, &meta)?;
            // Nobody else may be able to replace the symlink either.
            if let Some(holder) = part.parent() {
                check_part(dir, holder, what, me, true)?;
            }
        }
    }
    let real = fs::canonicalize(dir).map_err(|error| UnsafeDir::Create {
        what,
        dir: dir.to_owned(),
        error,
    })?;
    // The first part is `dir` itself; every later one is a parent whose entry on our path
    // (the part checked just before it) already proved to belong to root or us.
    for (i, part) in real.ancestors().enumerate() {
        check_part(dir, part, what, me, i > 0)?;
    }
    Ok(())
}

/// Checks one directory (not its parents); `dir` is what the error names.
pub fn check_one(dir: &Path, part: &Path, what: &'static str, me: u32) -> Result<(), UnsafeDir> {
    check_part(dir, part, what, me, false)
}

/// `part` must belong to root or to us; `dir` is what the error names.
fn check_owner(
    dir: &Path,
    part: &Path,
    what: &'static str,
    me: u32,
    meta: &fs::Metadata,
) -> Result<(), UnsafeDir> {
    if meta.uid() != 0 && meta.uid() != me {
        return Err(UnsafeDir::Owner {
            what,
            dir: dir.to_owned(),
            part: part.to_owned(),
            uid: meta.uid(),
        });
    }
    Ok(())
}

/// `above`: `part` is a parent of the checked directory, so being sticky makes it safe.
fn check_part(
    dir: &Path,
    part: &Path,
    what: &'static str,
    me: u32,
    above: bool,
) -> Result<(), UnsafeDir> {
    let meta = fs::symlink_metadata(part).map_err(|error| UnsafeDir::Create {
        what,
        dir: dir.to_owned(),
        error,
    })?;
    if !meta.is_dir() {
        return Err(UnsafeDir::NotADir {
            what,
            dir: dir.to_owned(),
            part: part.to_owned(),
        });
    }
    check_owner(dir, part, what, me, &meta)?;
    let mode = meta.permissions().mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(above && sticky) {
        return Err(UnsafeDir::Writable {
            what,
            dir: dir.to_owned(),
            part: part.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_others_can_write_is_refused_and_named() {
        let base = tempfile::tempdir().unwrap();
        let open = base.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let dir = open.join("state");
        let e = prepare(&dir, "state directory").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "refusing the state directory '{}': '{}' can be written by other users (mode 777); use a directory that only root can write all the way up to /",
                dir.display(),
                open.display()
            )
        );
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir, "state directory").unwrap();
        assert!(dir.is_dir());
    }

    #[test]
    fn a_sticky_parent_is_safe_but_a_sticky_directory_itself_is_not() {
        let base = tempfile::tempdir().unwrap();
        let sticky = base.path().join("sticky");
        fs::create_dir(&sticky).unwrap();
        fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
        // Like /tmp: an entry of ours in it cannot be swapped by anyone else.
        prepare(&sticky.join("state"), "state directory").unwrap();
        let e = check(&sticky, "state directory").unwrap_err();
        assert!(matches!(e, UnsafeDir::Writable { mode: 0o1777, .. }), "{e}");
    }

    #[test]
    fn a_symlink_where_a_directory_belongs_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let e = check_one(&link, &link, "profiles directory", me).unwrap_err();
        assert!(matches!(e, UnsafeDir::NotADir { .. }), "{e}");
    }
}
