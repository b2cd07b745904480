//! What /proc tells about a process: the path of the file a profile belongs to.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::profile::ProfileKey;

/// The best full path for the executable `key` that process `tgid` runs (or ran), never a
/// relative one (empty if none is known).
///
/// `/proc/PID/exe` is right only if it still names the same inode (the process may have exec'd
/// again or exited); otherwise the path the kernel walked at exec (`kernel_path`, may be empty),
/// and last the name exec was given, made absolute with the process's working directory when
/// that is still readable.
pub fn exe_path(tgid: u32, key: ProfileKey, kernel_path: &str, filename: &str) -> String {
    let proc = Path::new("/proc").join(tgid.to_string());
    if let (Ok(target), Ok(meta)) = (
        std::fs::read_link(proc.join("exe")),
        std::fs::metadata(proc.join("exe")),
    ) {
        if ProfileKey::from_stat(meta.dev(), meta.ino()) == key.with_script(0) {
            let s = target.to_string_lossy();
            return s.strip_suffix(" (deleted)").unwrap_or(&s).to_string();
        }
    }
    if kernel_path.starts_with('/') {
        return kernel_path.to_string();
    }
    absolute_or_empty(absolute(tgid, filename))
}

/// A script profile's script: as given if absolute, else joined to the working directory the
/// kernel walked at exec (`cwd`), else to the process's current one; never relative.
pub fn script_path(tgid: u32, script: &str, cwd: &str) -> String {
    if script.is_empty() || script.starts_with('/') {
        return script.to_string();
    }
    if cwd.starts_with('/') {
        return normalize(&Path::new(cwd).join(script));
    }
    absolute_or_empty(absolute(tgid, script))
}

fn absolute_or_empty(p: String) -> String {
    if p.starts_with('/') {
        p
    } else {
        String::new()
    }
}

/// `path` made absolute against process `tgid`'s working directory, when it is relative and that
/// is still readable (else `path` as it is).
pub fn absolute(tgid: u32, path: &str) -> String {
    if path.is_empty() || path.starts_with('/') {
        return path.to_string();
    }
    match std::fs::read_link(Path::new("/proc").join(tgid.to_string()).join("cwd")) {
        Ok(cwd) => normalize(&cwd.join(path)),
        Err(_) => path.to_string(),
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
        let path = exe_path(std::process::id(), key, "/wrong", "ignored");
        assert_eq!(Path::new(&path), std::env::current_exe().unwrap());
    }

    #[test]
    fn a_mismatched_key_falls_back_to_the_given_name() {
        let key = ProfileKey::file(1, 1);
        let me = std::process::id();
        assert_eq!(exe_path(me, key, "", "/usr/bin/true"), "/usr/bin/true");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            exe_path(me, key, "", "./prog"),
            cwd.join("prog").to_string_lossy()
        );
        // The kernel's walk wins over the name as given.
        assert_eq!(exe_path(me, key, "/opt/prog", "./prog"), "/opt/prog");
        // A process gone: the kernel's path, or nothing rather than a relative one.
        assert_eq!(exe_path(u32::MAX, key, "/opt/prog", "./prog"), "/opt/prog");
        assert_eq!(exe_path(u32::MAX, key, "", "./prog"), "");
    }

    #[test]
    fn a_relative_script_is_made_absolute_against_the_exec_time_cwd() {
        assert_eq!(script_path(u32::MAX, "/home/u/x.sh", ""), "/home/u/x.sh");
        assert_eq!(script_path(u32::MAX, "./x.sh", "/home/u"), "/home/u/x.sh");
        assert_eq!(script_path(u32::MAX, "bin/x.sh", "/"), "/bin/x.sh");
        assert_eq!(script_path(u32::MAX, "x.sh", ""), "");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            script_path(std::process::id(), "x.sh", ""),
            cwd.join("x.sh").to_string_lossy()
        );
    }
}
