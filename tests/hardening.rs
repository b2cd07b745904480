//! Root tests of what a hostile user or an unlucky disk does to the monitor: failed writes are
//! reported to whoever asked, commands survive a crash, hostile directories are refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// A mount over `path` for the length of a test; unmounted (lazily, so a busy mount still goes)
/// when dropped.
struct Mounted(PathBuf);

impl Mounted {
    #[track_caller]
    fn new(path: &Path, args: &[&str]) -> Mounted {
        let st = Command::new("mount").args(args).arg(path).status().unwrap();
        assert!(st.success(), "mount {args:?} {} failed", path.display());
        Mounted(path.to_owned())
    }

    /// `path` bind-mounted onto itself, read-only.
    fn read_only(path: &Path) -> Mounted {
        let m = Mounted::new(path, &["--bind", path.to_str().unwrap()]);
        let st = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "cannot make {} read-only", path.display());
        m
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn profile_of<'a>(profiles: &'a Value, key: &str) -> Option<&'a Value> {
    profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile"] == key)
}

/// Copies of `true` are distinct executables: each gets a new profile.
fn new_profiles(dir: &Path, tag: &str, n: usize) {
    for i in 0..n {
        let copy = dir.join(format!("{tag}{i}"));
        std::fs::copy("/bin/true", &copy).unwrap();
        run(&copy, &[]);
    }
}

#[test]
fn root_failed_saves_are_reported_to_whoever_asked() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut mon = Monitor::start(dir.path(), &state, &["--save-interval", "1s"]);
    let prog = build_fixture(dir.path(), "anomaly");
    run(&prog, &[]);
    // Let the first periodic save write what the start-up adopted.
    std::thread::sleep(Duration::from_millis(1500));
    let profiles = state.join("profiles");
    let ro = Mounted::read_only(&profiles);
    new_profiles(dir.path(), "ro", 6);
    let since = Instant::now();

    let out = mon.client(&["save"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("ebpfh: could not save "), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let cmd = mon
        .wait_for(
            "command",
            |e| e["command"] == "save",
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(cmd["result"], "failed");
    assert!(
        cmd["error"]
            .as_str()
            .unwrap()
            .contains("Read-only file system"),
        "{cmd}"
    );

    // A command takes effect in the kernel, but the one who asked learns it is not on disk.
    let out = mon.client(&["freeze", "--profile", "anomaly"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("took effect, but only until the monitor stops"),
        "{err}"
    );

    // The periodic save fails every second for several files: one line per save.
    std::thread::sleep(Duration::from_millis(3200));
    let stderr = mon.stderr_text();
    let lines = stderr
        .lines()
        .filter(|l| l.contains("could not save"))
        .count();
    let saves = since.elapsed().as_secs() as usize + 1;
    assert!(
        (2..=saves + 1).contains(&lines),
        "{lines} lines in {saves} saves:\n{stderr}"
    );

    mon.stop_with(Signal::SIGTERM);
    let stopped = &mon.events_of("monitor_stopped")[0];
    let failed = stopped["profiles_failed"].as_u64().unwrap();
    assert!(failed >= 6, "{stopped}");
    drop(ro);
    // Nothing was written, so the profiles made after the mount have no file.
    for i in 0..6 {
        let copy = dir.path().join(format!("ro{i}"));
        let name = stat_key(&copy).replace(':', "-") + ".prof";
        assert!(!profiles.join(&name).exists(), "{name}");
    }
}

#[test]
fn root_a_full_disk_is_named_as_such() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mon = Monitor::start(dir.path(), &state, &[]);
    let profiles = state.join("profiles");
    let _full = Mounted::new(
        &profiles,
        &["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"],
    );
    // Fill it: the write stops at ENOSPC, which is the point.
    let _ = std::fs::write(profiles.join("filler"), vec![0u8; 1 << 20]);
    new_profiles(dir.path(), "full", 2);
    let out = mon.client(&["save"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the disk is full"), "{err}");
    drop(mon);
}

/// Commands are on disk before they are answered: SIGKILL right after them loses nothing.
#[test]
fn root_commands_and_settings_survive_a_kill_right_after_them() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    let first = dir.path().join("first");
    std::fs::create_dir(&first).unwrap();
    let mon = Monitor::start(&first, &state, &[]);
    for _ in 0..3 {
        run(&prog, &[]);
    }
    mon.client_json(&["set", "anomaly_limit", "50"]);
    let done = mon.client_json(&["normalize", "--profile", key.as_str()]);
    assert_eq!(done["done"]["profile"]["state"], "normal");
    mon.signal(Signal::SIGKILL);
    drop(mon);

    let second = dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let mon = Monitor::start(&second, &state, &[]);
    let profiles = mon.client_json(&["profiles"]);
    let p = profile_of(&profiles, &key).expect("the normalized profile was saved");
    assert_eq!(p["state"], "normal", "{p}");
    let status = mon.client_json(&["status"]);
    assert_eq!(status["settings"]["anomaly_limit"], 50, "{status}");
}
