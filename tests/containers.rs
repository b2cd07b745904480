//! Cgroups and containers on the real kernel: cgroups made by hand under the cgroup2 mount,
//! named as docker (systemd scope and cgroupfs layouts) would name them, with real processes
//! moved into them. No container runtime is needed. Root: the monitor loads the BPF program.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const SCOPE_ID: &str = "4d5b9b1e8f3a2c7d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";
const CGROUPFS_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A cgroup tree made for the test under the cgroup2 mount, removed (deepest first) on drop.
struct Tree {
    mount: PathBuf,
    top: PathBuf,
    made: Vec<PathBuf>,
    sleepers: Vec<Child>,
}

impl Tree {
    fn new() -> Tree {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let mount = ebpfh::cgroup::cgroup2_mount(&mounts).expect("a cgroup2 mount");
        let top = mount.join(format!("ebpfh-test-{}", std::process::id()));
        let mut t = Tree {
            mount,
            top: top.clone(),
            made: Vec::new(),
            sleepers: Vec::new(),
        };
        t.make(&top);
        t
    }

    fn make(&mut self, dir: &Path) {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.made.push(dir.to_path_buf());
    }

    /// A cgroup below the test's top one, by relative path (parents made as needed).
    fn cgroup(&mut self, rel: &str) -> PathBuf {
        let mut dir = self.top.clone();
        for part in rel.split('/') {
            dir = dir.join(part);
            if !dir.exists() {
                self.make(&dir.clone());
            }
        }
        dir
    }

    /// The path ebpfh must print: relative to the cgroup2 mount, with a leading slash.
    fn name(&self, dir: &Path) -> String {
        format!("/{}", dir.strip_prefix(&self.mount).unwrap().display())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for s in &mut self.sleepers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `sh` joins cgroup `dir`, then becomes `prog args`.
fn in_cgroup(dir: &Path, prog: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "echo $$ > '{}/cgroup.procs' && exec \"$0\" \"$@\"",
            dir.display()
        ))
        .arg(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn run_in(dir: &Path, prog: &Path, args: &[&str]) -> u32 {
    let mut child = in_cgroup(dir, prog, args).spawn().unwrap();
    let pid = child.id();
    assert!(
        child.wait().unwrap().success(),
        "{} {args:?} failed in {}",
        prog.display(),
        dir.display()
    );
    pid
}

/// The test's own cgroup v2 path, from /proc/self/cgroup.
fn own_cgroup() -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .to_string()
}

#[test]
fn root_events_and_ps_name_the_cgroup_and_the_container() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    let mut tree = Tree::new();
    let scope = tree.cgroup(&format!("system.slice/docker-{SCOPE_ID}.scope"));
    let cgroupfs = tree.cgroup(&format!("docker/{CGROUPFS_ID}"));
    let plain = tree.cgroup("plain.service");
    // --log-quiet: the second backdoor run only repeats what the first showed, so it is a
    // quiet incident, whose line is written with this flag.
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &["--log-quiet"]);

    // The program's first exec is in the docker scope: its profile_created line says so.
    let pid = run_in(&scope, &prog, &[]);
    let created = mon
        .wait_for("profile_created", |e| e["profile"] == key, CREATED_WAIT)
        .expect("a profile_created line for the program");
    assert_eq!(created["pid"], pid);
    assert_eq!(created["cgroup"], tree.name(&scope), "{created}");
    assert_eq!(created["container_id"], SCOPE_ID, "{created}");

    // Trained outside any container: the lines carry the test's own cgroup and no container.
    let normal = mon.train_to_normal(&prog, &[]);
    assert_eq!(normal["cgroup"], own_cgroup().as_str(), "{normal}");
    assert!(normal.get("container_id").is_none(), "{normal}");

    // The backdoor runs in a cgroupfs-layout container (/docker/<id>).
    let pid = run_in(&cgroupfs, &prog, &[BACKDOOR]);
    let anomaly = mon
        .wait_for("anomaly", |e| e["pid"] == pid, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no anomaly from the backdoor run: {:#?}", mon.events()));
    assert_eq!(anomaly["cgroup"], tree.name(&cgroupfs), "{anomaly}");
    assert_eq!(anomaly["container_id"], CGROUPFS_ID, "{anomaly}");
    // In a cgroup that is not a container's, the line has the cgroup only.
    let pid = run_in(&plain, &prog, &[BACKDOOR]);
    let anomaly = mon
        .wait_for("incident", |e| e["pid"] == pid, Duration::from_secs(10))
        .expect("an incident from the plain cgroup's run");
    assert_eq!(anomaly["cgroup"], tree.name(&plain), "{anomaly}");
    assert!(anomaly.get("container_id").is_none(), "{anomaly}");

    // ps shows a process running in a container.
    let sleeper = in_cgroup(&scope, Path::new("/bin/sleep"), &["60"])
        .spawn()
        .unwrap();
    let sleeper_pid = sleeper.id();
    tree.sleepers.push(sleeper);
    let mut row = Value::Null;
    for _ in 0..100 {
        let rows = mon.client_json(&["ps"]);
        if let Some(r) = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pid"] == sleeper_pid && r["comm"] == "sleep")
        {
            row = r.clone();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(row["container_id"], SCOPE_ID, "ps row: {row}");
    assert_eq!(row["cgroup"], tree.name(&scope), "ps row: {row}");
    let out = mon.client(&["ps"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    assert!(header.contains("CONTAINER"), "{text}");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&sleeper_pid.to_string()))
        .unwrap_or_else(|| panic!("no ps line for {sleeper_pid}:\n{text}"));
    assert!(line.contains(&SCOPE_ID[..12]), "{line}");
    assert!(
        !line.contains(&SCOPE_ID[..13]),
        "the id is shortened to 12: {line}"
    );
    mon.stop();
}
