//! Root integration tests for hashing executables off the monitor's event loop (src/hasher.rs),
//! with the real `ebpfh` binary, the real kernel program and big real programs.
//!
//! To show that the loop does not wait for a digest without measuring any time, the tests stop
//! the monitor's hashing thread (ptrace stops one thread, not the process) and check what the
//! monitor answers and writes meanwhile; then they let it go and check what it writes after.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::libc;
use serde_json::Value;

use common::*;

/// `sha256sum FILE`: an implementation independent of ebpfh's.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A copy of /bin/true grown to `size` bytes (a sparse tail the ELF loader never looks at):
/// as big as a browser or a test binary with debug info, and still a program that runs.
fn big_program(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy("/bin/true", &path).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(size).unwrap();
    path
}

/// The monitor's hashing thread, stopped (ptrace-interrupted) until this is dropped.
struct StoppedHasher {
    tid: libc::pid_t,
}

impl StoppedHasher {
    #[track_caller]
    fn stop(mon: &Monitor) -> StoppedHasher {
        let pid = mon.pid();
        let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim_end() == ebpfh::hasher::THREAD_NAME)
            })
            .and_then(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
            .expect("the monitor has a hashing thread");
        // SAFETY: plain ptrace and waitpid calls on a thread of our own child; no memory is
        // shared with the tracee.
        unsafe {
            assert_eq!(
                libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0),
                0,
                "PTRACE_SEIZE"
            );
            assert_eq!(
                libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0),
                0,
                "PTRACE_INTERRUPT"
            );
            let mut status = 0;
            assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid);
            assert!(libc::WIFSTOPPED(status), "the hashing thread stopped");
        }
        StoppedHasher { tid }
    }
}

impl Drop for StoppedHasher {
    fn drop(&mut self) {
        // SAFETY: as above; the tracee is in a ptrace stop, so it can be detached.
        unsafe {
            libc::ptrace(libc::PTRACE_DETACH, self.tid, 0, 0);
        }
    }
}

/// The `profiles --json` rows of `keys`, once the monitor lists them all.
#[track_caller]
fn rows_of(mon: &Monitor, keys: &[String]) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = mon.client_json(&["profiles"]);
        let rows = rows.as_array().unwrap();
        let found: Vec<Value> = keys
            .iter()
            .filter_map(|k| rows.iter().find(|r| r["profile"] == *k.as_str()).cloned())
            .collect();
        if found.len() == keys.len() {
            return found;
        }
        assert!(Instant::now() < end, "{keys:?} are never all listed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `profiles --json` row of `key`, once the monitor lists it.
#[track_caller]
fn row_of(mon: &Monitor, key: &str) -> Value {
    rows_of(mon, &[key.to_string()]).remove(0)
}

/// Polls `profiles --json` until `key`'s row has a sha256.
#[track_caller]
fn hashed_row(mon: &Monitor, key: &str) -> Value {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let row = row_of(mon, key);
        if !row["sha256"].is_null() {
            return row;
        }
        assert!(Instant::now() < end, "{key} is never hashed: {row}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until nothing waits to be hashed (what the monitor found running at start-up).
#[track_caller]
fn wait_idle(mon: &Monitor) {
    let end = Instant::now() + Duration::from_secs(120);
    while mon.client_json(&["status"])["hashing"]["waiting"] != 0 {
        assert!(Instant::now() < end, "the start-up hashes never finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// While a 300 MB program's digest is pending, the monitor answers, lists the profile without a
/// digest and holds its `profile_created` line; once hashed, the line and the row carry the
/// digest `sha256sum` computes.
#[test]
fn root_the_monitor_answers_while_a_big_executable_is_hashed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let big = big_program(dir.path(), "big", 300 << 20);
    let key = stat_key(&big);
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);

    let stopped = StoppedHasher::stop(&mon);
    run(&big, &[]);
    let row = row_of(&mon, &key);
    assert!(row["sha256"].is_null(), "hashed while stopped: {row}");
    let status = mon.client_json(&["status"]);
    assert!(
        status["hashing"]["waiting"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        !mon.events_of("profile_created")
            .iter()
            .any(|e| e["profile"] == key),
        "the line waits for its digest"
    );
    drop(stopped);

    let digest = sha256sum(&big);
    let created = mon
        .wait_for(
            "profile_created",
            |e| e["profile"] == key,
            Duration::from_secs(60),
        )
        .expect("a profile_created line for the program");
    assert_eq!(created["sha256"], digest.as_str());
    assert_eq!(created["exe"], big.to_str().unwrap());
    assert_eq!(hashed_row(&mon, &key)["sha256"], digest.as_str());
    mon.stop();
}

/// A digest that takes longer than the line may wait: the line goes out without it, the profile
/// is saved without it, and both the row and the saved file get it once it is computed.
#[test]
fn root_a_late_digest_reaches_the_row_and_the_saved_profile() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prog = big_program(dir.path(), "late", 1 << 20);
    let key = stat_key(&prog);
    let digest = sha256sum(&prog);
    let mut mon = Monitor::start(dir.path(), &state, &[]);

    let stopped = StoppedHasher::stop(&mon);
    // Trained a little, so that the profile has something to save.
    for _ in 0..3 {
        run(&prog, &[]);
    }
    let limit = ebpfh::hasher::LINE_WAIT + Duration::from_secs(30);
    let created = mon
        .wait_for("profile_created", |e| e["profile"] == key, limit)
        .expect("the line is written without its digest at the deadline");
    assert!(created["sha256"].is_null(), "{created}");
    mon.client_json(&["status"])["hashing"]["late"]
        .as_u64()
        .filter(|&n| n >= 1)
        .expect("the late line is counted");
    let saved = |state: &Path| {
        ebpfh::store::Store::open(state)
            .unwrap()
            .load_all()
            .profiles
            .into_iter()
            .find(|p| p.key.to_string() == key)
            .expect("the profile was saved")
    };
    assert!(mon.client(&["save"]).status.success());
    assert_eq!(saved(&state).identity, None);
    drop(stopped);

    assert_eq!(hashed_row(&mon, &key)["sha256"], digest.as_str());
    assert!(mon.client(&["save"]).status.success());
    assert_eq!(
        saved(&state).identity.map(|i| i.sha256.to_string()),
        Some(digest)
    );
    mon.stop();
}

/// More new executables than the queue holds: the rest are deferred, counted and their lines
/// written at once without a digest; every one of them is hashed once the worker goes on.
#[test]
fn root_a_flood_of_new_executables_is_deferred_and_counted_not_lost() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let n = ebpfh::hasher::QUEUE + 8;
    let progs: Vec<PathBuf> = (0..n)
        .map(|i| big_program(dir.path(), &format!("p{i}"), 64 << 10))
        .collect();
    let keys: Vec<String> = progs.iter().map(|p| stat_key(p)).collect();
    let digest = sha256sum(&progs[0]);
    let run_dir = dir.path().join("mon");
    std::fs::create_dir(&run_dir).unwrap();
    let mut mon = Monitor::start(&run_dir, &dir.path().join("state"), &[]);
    wait_idle(&mon);

    let stopped = StoppedHasher::stop(&mon);
    for p in &progs {
        run(p, &[]);
    }
    rows_of(&mon, &keys);
    let status = mon.client_json(&["status"]);
    let deferred = status["hashing"]["deferred"].as_u64().unwrap();
    // Other programs on the machine may take places in the queue too: at least ours overflow it.
    assert!(deferred >= 8, "{status}");
    assert!(
        status["hashing"]["waiting"].as_u64().unwrap() >= n as u64,
        "{status}"
    );
    // The deferred ones' lines are out already, without a digest; the queued ones wait.
    let early: Vec<Value> = mon
        .events_of("profile_created")
        .into_iter()
        .filter(|e| keys.iter().any(|k| e["profile"] == *k.as_str()))
        .collect();
    assert!(
        early.len() >= 8 && early.len() as u64 <= deferred,
        "{early:?}"
    );
    assert!(early.iter().all(|e| e["sha256"].is_null()), "{early:?}");
    drop(stopped);

    for k in &keys {
        assert_eq!(hashed_row(&mon, k)["sha256"], digest.as_str(), "{k}");
    }
    wait_idle(&mon);
    mon.stop();
    assert!(
        mon.stderr_text()
            .contains("profile_created lines went out without sha256"),
        "{}",
        mon.stderr_text()
    );
}
