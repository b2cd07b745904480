//! Cgroups and containers: the kernel names a task's cgroup v2 by its id (the inode of the
//! cgroup's directory on the cgroup2 mount); this turns ids into paths, with a cache so no
//! event costs a file-system walk once its cgroup is known, and paths into container ids.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

// Looked up on every event: see src/monitor.rs.
use foldhash::{HashMap, HashMapExt};

/// The cgroup2 mount point from a `/proc/mounts` text (`/sys/fs/cgroup`, or on hybrid hosts
/// `/sys/fs/cgroup/unified`).
pub fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape(dir)))
    })
}

/// `/proc/mounts` writes space, tab, newline and backslash in octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Paths of cgroup ids, learned by walking the cgroup2 tree.
#[derive(Debug, Default)]
pub struct Cgroups {
    root: Option<PathBuf>,
    /// Every id seen in a walk, and ids no walk found (a cgroup removed before it was looked
    /// up). Ids are never reused, so neither kind of entry goes stale.
    paths: HashMap<u64, Option<String>>,
}

impl Cgroups {
    /// The cgroup2 hierarchy of this machine, as `/proc/mounts` names it (none: every path is
    /// unknown).
    pub fn new() -> Cgroups {
        let root = std::fs::read_to_string("/proc/mounts")
            .ok()
            .and_then(|m| cgroup2_mount(&m));
        if root.is_none() {
            log::warn!("no cgroup2 file system is mounted: events carry no cgroup or container");
        }
        Cgroups::at(root)
    }

    /// The hierarchy mounted at `root`.
    pub fn at(root: Option<PathBuf>) -> Cgroups {
        Cgroups {
            root,
            paths: HashMap::new(),
        }
    }

    /// The path of cgroup `id` below the cgroup2 root (`/` for the root, `/system.slice/…`),
    /// or `None` for id 0 (no cgroup read) and for a cgroup that is gone.
    pub fn path(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.paths.get(&id) {
            return p.clone();
        }
        let root = self.root.clone()?;
        self.walk(&root, &root);
        self.paths.entry(id).or_insert(None).clone()
    }

    /// Records every cgroup directory under `dir` by inode.
    fn walk(&mut self, root: &Path, dir: &Path) {
        let Ok(meta) = std::fs::metadata(dir) else {
            return;
        };
        let rel = match dir.strip_prefix(root) {
            Ok(r) if r.as_os_str().is_empty() => "/".to_string(),
            Ok(r) => format!("/{}", r.to_string_lossy()),
            Err(_) => return,
        };
        self.paths.insert(meta.ino(), Some(rel));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            // Cgroup directories are real directories; the control files are not.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.walk(root, &e.path());
            }
        }
    }
}

/// The container a cgroup path belongs to, when the path follows a runtime's layout: systemd
/// scopes `docker-<id>.scope`, `cri-containerd-<id>.scope`, `libpod-<id>.scope`,
/// `crio-<id>.scope`, and the cgroupfs layouts `/docker/<id>`, `/kubepods/…/<id>`,
/// `/libpod_parent/…/<id>`. The id is the runtime's 64-hex-digit container id.
pub fn container_id(path: &str) -> Option<String> {
    const SCOPES: [&str; 4] = ["docker-", "cri-containerd-", "libpod-", "crio-"];
    const PARENTS: [&str; 5] = ["docker", "kubepods", "libpod_parent", "containerd", "crio"];
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // The innermost component that names a container: a container's own sub-cgroups (e.g.
    // `…/libpod-<id>.scope/container`) still belong to it.
    for (i, part) in parts.iter().enumerate().rev() {
        let scope = part
            .strip_suffix(".scope")
            .and_then(|s| SCOPES.iter().find_map(|p| s.strip_prefix(p)));
        if let Some(id) = scope.filter(|id| hex(id)) {
            return Some(id.to_string());
        }
        if hex(part)
            && parts[..i]
                .iter()
                .any(|p| PARENTS.contains(p) || p.starts_with("kubepods"))
        {
            return Some(part.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4d5b9b1e8f3a2c7d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";

    #[test]
    fn finds_the_cgroup2_mount_on_unified_and_hybrid_hosts() {
        let unified = "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"),
            None
        );
        assert_eq!(
            cgroup2_mount("none /mnt/my\\040cg cgroup2 rw 0 0\n"),
            Some(PathBuf::from("/mnt/my cg"))
        );
    }

    #[test]
    fn container_ids_of_every_runtime_layout() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/kubepods.slice/kubepods-pod42.slice/crio-{ID}.scope"),
            format!("/docker/{ID}"),
            format!("/kubepods/besteffort/pod0b6e3a5c-1d2e-4f5a-9b8c-7d6e5f4a3b2c/{ID}"),
            format!("/kubepods/pod0b6e3a5c/{ID}"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(ID), "{path}");
        }
    }

    #[test]
    fn other_cgroups_name_no_container() {
        for path in [
            "/",
            "/user.slice/user-1000.slice/session-2.scope",
            "/system.slice/docker.service",
            "/system.slice/docker-short.scope",
            &format!("/{ID}"), // 64 hex digits outside any runtime's parent
            &format!("/system.slice/docker-{}.scope", &ID[..63]),
        ] {
            assert_eq!(container_id(path), None, "{path}");
        }
    }

    #[test]
    fn ids_map_to_paths_below_the_root_and_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let scope = root.join("system.slice").join(format!("docker-{ID}.scope"));
        std::fs::create_dir_all(&scope).unwrap();
        std::fs::write(root.join("system.slice/cgroup.procs"), "").unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let mut c = Cgroups::at(Some(root.to_path_buf()));
        assert_eq!(
            c.path(ino(&scope)),
            Some(format!("/system.slice/docker-{ID}.scope"))
        );
        assert_eq!(c.path(ino(root)).as_deref(), Some("/"));
        assert_eq!(c.path(0), None);
        // Known ids are answered from the cache, even after the directory went away.
        let gone = ino(&scope);
        std::fs::remove_dir(&scope).unwrap();
        assert!(c.path(gone).is_some());
        // A file's inode is not a cgroup.
        assert_eq!(c.path(ino(&root.join("system.slice/cgroup.procs"))), None);
    }
}
