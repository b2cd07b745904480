//! What /proc tells about a process: the path of the file a profile belongs to.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::profile::ProfileKey;

/// The best full path for the executable `key` that process `tgid` runs (or ran).
///
/// `/proc/PID/exe` is right only if it still names the same inode (the process may have exec'd
/// again or exited); otherwise fall back to the name exec was given, made absolute with the
/// process's working directory when that is still readable.
pub fn exe_path(tgid: u32, key: ProfileKey, filename: &str) -> String {
    let proc = Path::new("/proc").join(tgid.to_string());
    if let (Ok(target), Ok(meta)) = (
        std::fs::read_link(proc.join("exe")),
        std::fs::metadata(proc.join("exe")),
    ) {
        if ProfileKey::from_stat(meta.dev(), meta.ino()) == key {
            let s = target.to_string_lossy();
            return s.strip_suffix(" (deleted)").unwrap_or(&s).to_string();
        }
    }
    if filename.is_empty() || filename.starts_with('/') {
        return filename.to_string();
    }
    match std::fs::read_link(proc.join("cwd")) {
        Ok(cwd) => normalize(&cwd.join(filename)),
        Err(_) => filename.to_string(),
    }
}

/// Removes `.` components (`./prog` is how shells run local programs).
fn normalize(p: &Path) -> String {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect::<std::path::PathBuf>()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_exe_is_found_by_key() {
        let me = std::fs::metadata("/proc/self/exe").unwrap();
        let key = ProfileKey::from_stat(me.dev(), me.ino());
        let path = exe_path(std::process::id(), key, "ignored");
        assert_eq!(Path::new(&path), std::env::current_exe().unwrap());
    }

    #[test]
    fn a_mismatched_key_falls_back_to_the_given_name() {
        let key = ProfileKey { kdev: 1, ino: 1 };
        assert_eq!(
            exe_path(std::process::id(), key, "/usr/bin/true"),
            "/usr/bin/true"
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            exe_path(std::process::id(), key, "./prog"),
            cwd.join("prog").to_string_lossy()
        );
        assert_eq!(exe_path(u32::MAX, key, "./prog"), "./prog");
    }
}
