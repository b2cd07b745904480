//! Root tests of pH's delay response: a trained program driven into anomalies is stopped for
//! 2^LFC x delay_factor per call, runs freely again once its locality frame decays, and no
//! process stays stopped when the monitor dies. Responses are scoped with --respond-only so the
//! rest of the machine (the test harness included) is never delayed.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// The one-letter state in /proc/PID/stat ('T' = stopped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn root_delays_grow_with_the_lfc_and_fade_with_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "burst");
    let only = prog.to_str().unwrap();
    let args = [
        "--respond-only",
        only,
        "--delay-factor",
        "1",
        "--max-delay",
        "8ms",
    ];
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &args);
    mon.train_to_normal(&prog, &[]);

    let started = Instant::now();
    let pid = run(&prog, &["4"]);
    let took = started.elapsed();
    mon.wait_for("resumed", |e| e["pid"] == pid, Duration::from_secs(5));
    mon.stop();

    let delays: Vec<Value> = mon
        .events_of("delay")
        .into_iter()
        .filter(|e| e["pid"] == pid)
        .collect();
    assert!(!delays.is_empty(), "the anomalous run was never delayed");
    for d in &delays {
        let lfc = d["lfc"].as_u64().unwrap();
        let want = (1u64 << lfc.min(20)).min(8);
        assert_eq!(
            d["delay_ms"].as_u64().unwrap(),
            want,
            "2^LFC ms, capped at 8: {d}"
        );
        assert_eq!(d["exe"], only);
    }
    let lfcs: Vec<u64> = delays.iter().map(|d| d["lfc"].as_u64().unwrap()).collect();
    let peak = *lfcs.iter().max().unwrap();
    assert!(peak >= 4, "four anomalous writes and more: {lfcs:?}");
    // The locality frame decays one cell per clean call: the last delays come at LFC 1, and the
    // rest of the 300 calls run undelayed.
    assert_eq!(
        *lfcs.last().unwrap(),
        1,
        "delays fade with the LFC: {lfcs:?}"
    );
    assert!(
        delays.len() < 300,
        "not every call was delayed: {}",
        delays.len()
    );
    let total_ms: u64 = delays.iter().map(|d| d["delay_ms"].as_u64().unwrap()).sum();
    assert!(
        took >= Duration::from_millis(total_ms),
        "ran {took:?}, yet was delayed {total_ms} ms"
    );
    let resumed = mon
        .events_of("resumed")
        .into_iter()
        .filter(|e| e["pid"] == pid)
        .count();
    assert!(resumed >= 1);

    // Responses were scoped with --respond-only: the training runs (before normal) and every
    // other process on the machine went undelayed.
    assert!(mon.events_of("delay").iter().all(|e| e["pid"] == pid));
}

/// Starts `prog backdoor` in the background and waits until the kernel has stopped it.
fn stopped_run(mon: &mut Monitor, prog: &std::path::Path) -> std::process::Child {
    let child = Command::new(prog)
        .arg("3")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(
        mon.wait_for("delay", |e| e["pid"] == pid, Duration::from_secs(10))
            .is_some(),
        "the run was not delayed"
    );
    assert!(
        wait_until(Duration::from_secs(5), || proc_state(pid) == Some('T')),
        "not stopped"
    );
    child
}

#[test]
fn root_a_restarted_monitor_resumes_what_a_killed_one_stopped() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prog = build_fixture(dir.path(), "burst");
    let only = prog.to_str().unwrap();
    // One second per LFC step: the first stop lasts 2 s, long enough to kill the monitor.
    let args = [
        "--respond-only",
        only,
        "--delay-factor",
        "1000",
        "--max-delay",
        "2s",
    ];
    let mut first = Monitor::start(dir.path(), &state, &args);
    first.train_to_normal(&prog, &[]);
    let mut child = stopped_run(&mut first, &prog);
    let pid = child.id();
    first.signal(Signal::SIGKILL);
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        proc_state(pid),
        Some('T'),
        "still stopped after the monitor died"
    );

    let second_dir = dir.path().join("second");
    fs::create_dir(&second_dir).unwrap();
    let mut second = Monitor::start(&second_dir, &state, &[]);
    let resumed = second.wait_for("resumed", |e| e["pid"] == pid, Duration::from_secs(10));
    assert!(
        resumed.is_some(),
        "the restarted monitor did not resume pid {pid}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "it never finished"
    );
    second.stop();
    assert!(child.wait().unwrap().success());
}

#[test]
fn root_resume_all_frees_every_stopped_process() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prog = build_fixture(dir.path(), "burst");
    let only = prog.to_str().unwrap();
    let args = [
        "--respond-only",
        only,
        "--delay-factor",
        "60000",
        "--max-delay",
        "1h",
    ];
    let mut mon = Monitor::start(dir.path(), &state, &args);
    mon.train_to_normal(&prog, &[]);
    let mut child = stopped_run(&mut mon, &prog);
    mon.signal(Signal::SIGKILL);
    drop(mon);

    let out = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args(["resume", "--all", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "resumed 1 stopped processes"
    );
    assert!(
        wait_until(Duration::from_secs(10), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "it never finished"
    );
    let left = fs::read_to_string(state.join("stopped.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&left).unwrap().len(),
        0,
        "the list is empty now"
    );
}

/// execve abort needs the BPF LSM: where the kernel has it, it is active; where it refuses it (as
/// on kernels booted without lsm=...,bpf), the monitor says so once and runs on with delays.
#[test]
fn root_execve_abort_is_active_or_clearly_unavailable() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "burst");
    let args = [
        "--respond-only",
        prog.to_str().unwrap(),
        "--abort-execve",
        "3",
    ];
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &args);
    mon.stop();
    let started = &mon.events_of("monitor_started")[0];
    let responses: Vec<&str> = started["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(responses.contains(&"delay"), "{responses:?}");
    let warned = mon
        .stderr_text()
        .matches("execve abort is unavailable on this kernel")
        .count();
    if responses.contains(&"execve_abort") {
        assert_eq!(warned, 0);
    } else {
        assert_eq!(warned, 1, "one clear sentence:\n{}", mon.stderr_text());
    }
}
