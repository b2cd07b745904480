//! Root tests of the control socket: the real monitor binary, the real client subcommands.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ebpfh::control::client;
use serde_json::{json, Value};

fn profile_of<'a>(profiles: &'a Value, key: &str) -> Option<&'a Value> {
    profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile"] == key)
}

#[test]
fn root_clients_read_and_steer_a_running_monitor() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);
    // The common monitor's 2 s wait would make the program normal by itself.
    let s = mon.client_json(&["set", "normal_wait", "1h"]);
    assert_eq!(s["settings"]["normal_wait"], "1h");

    // Root only: the directory is 0700, the socket 0600, and the pid file names the monitor.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&mon.run_dir), 0o700);
    assert_eq!(mode(&mon.run_dir.join("control.sock")), 0o600);
    let pid: u32 = std::fs::read_to_string(mon.run_dir.join("ebpfh.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    for _ in 0..5 {
        run(&prog, &[]);
    }
    let status = mon.client_json(&["status"]);
    assert_eq!(status["pid"], pid);
    assert_eq!(status["monitoring"], true);
    assert!(
        status["profiles"]["training"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(status["processes"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(status["losses"]["events"], 0);

    let profiles = mon.client_json(&["profiles"]);
    let p = profile_of(&profiles, &key).expect("the test program has a profile");
    assert_eq!(p["exe"], prog.to_str().unwrap());
    assert_ne!(p["state"], "normal", "normal_wait is an hour");
    assert!(p["pairs"].as_u64().unwrap() > 0);
    assert!(p["calls"].as_u64().unwrap() > 0);

    let detail = mon.client_json(&["profile", "show", prog.to_str().unwrap()]);
    let train = detail["train"].as_array().unwrap();
    assert!(!train.is_empty());
    assert!(
        train.iter().any(|p| p["current"] == "write"),
        "pairs are named by syscall: {detail}"
    );
    let plain = mon.client(&["profile", "show", &key]);
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(text.contains("training pairs"), "{text}");
    assert!(text.contains("write "), "{text}");

    // Processes: our own sleeper shows up with its profile.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let ps = mon.client_json(&["ps"]);
        if let Some(p) = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == sleeper.id())
        {
            break p.clone();
        }
        assert!(
            Instant::now() < end,
            "sleep never showed up in ebpfh ps: {ps}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(found["comm"], "sleep");
    assert_eq!(found["state"], "training");
    let threads = mon.client_json(&["ps", "-t"]);
    assert!(!threads.as_array().unwrap().is_empty());

    // Subscribe before commanding, so the command event arrives on the stream.
    let events = client::event_stream(&mon.run_dir).expect("subscribe");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for v in events {
            if tx.send(v).is_err() {
                return;
            }
        }
    });

    // normalize by file name; freeze by pid.
    let out = mon.client(&["normalize", "--profile", "anomaly"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with(&format!("normalized {}", prog.display())),
        "{said}"
    );
    let profiles = mon.client_json(&["profiles"]);
    assert_eq!(profile_of(&profiles, &key).unwrap()["state"], "normal");
    let frozen = mon.client_json(&["freeze", "--pid", &sleeper.id().to_string()]);
    assert_eq!(frozen["done"]["op"], "freeze");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    let streamed = rx
        .iter()
        .find(|v| v["event"] == "command" && v["command"] == "normalize")
        .expect("the command reaches the event stream");
    assert_eq!(streamed["profile"], key);

    // Every command is logged: who asked, for what, and how it went.
    let cmd = mon
        .wait_for(
            "command",
            |e| e["command"] == "normalize",
            Duration::from_secs(5),
        )
        .expect("a command event");
    assert_eq!(cmd["peer_uid"], 0);
    assert!(cmd["peer_pid"].as_u64().unwrap() > 0);
    assert_eq!(cmd["target"], "profile anomaly");
    assert_eq!(cmd["profile"], key);
    assert_eq!(cmd["exe"], prog.to_str().unwrap());
    assert_eq!(cmd["profile_state"], "normal");
    assert_eq!(cmd["result"], "ok");

    // A normalized profile detects the backdoor at once.
    let backdoor = run(&prog, &[BACKDOOR]);
    assert!(
        mon.wait_for(
            "anomaly",
            |e| e["pid"] == backdoor && e["profile"] == key,
            Duration::from_secs(10)
        )
        .is_some(),
        "no anomaly after normalize"
    );

    // Settings change in the kernel: with monitoring off, nothing is counted any more.
    let s = mon.client_json(&["set", "monitoring", "off"]);
    assert_eq!(s["settings"]["monitoring"], false);
    assert_eq!(mon.client_json(&["status"])["monitoring"], false);
    let before = profile_of(&mon.client_json(&["profiles"]), &key).unwrap()["calls"].clone();
    run(&prog, &[]);
    let after = profile_of(&mon.client_json(&["profiles"]), &key).unwrap()["calls"].clone();
    assert_eq!(before, after, "monitoring off still counted calls");
    let s = mon.client_json(&["set", "normal_wait", "3s"]);
    assert_eq!(s["settings"]["normal_wait"], "3s");

    let bad = mon.client(&["set", "normal_factor_den", "0"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("'0' is not a valid normal_factor_den"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let failed = mon
        .wait_for(
            "command",
            |e| e["setting"] == "normal_factor_den",
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(failed["result"], "failed");

    let out = mon.client(&["save"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("saved "));

    let out = mon.client(&["reset", "--profile", "no-such-program"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "ebpfh: no profile matches 'no-such-program'; `ebpfh profiles` lists them"
    );

    mon.stop();
    assert!(
        !mon.run_dir.join("control.sock").exists(),
        "the socket is removed at exit"
    );
    assert!(!mon.run_dir.join("ebpfh.pid").exists());
}

#[test]
fn clients_without_a_monitor_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args(["status", "--run-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "ebpfh: no ebpfh monitor is running (no socket at {}/control.sock); start one with `sudo ebpfh --headless` or `sudo systemctl start ebpfh`",
            dir.path().display()
        )
    );
}

#[test]
fn root_clients_without_root_are_told_to_use_sudo() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_ebpfh"))
        .args(["status", "--run-dir"])
        .arg(&mon.run_dir)
        .output()
        .expect("setpriv (util-linux) runs");
    mon.stop();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "ebpfh: ebpfh status needs root to reach the monitor's socket; run it with sudo"
    );
}

#[test]
fn root_a_second_monitor_on_one_run_dir_is_refused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut first = Monitor::start(dir.path(), &dir.path().join("state"), &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args(["--headless", "--log", "-", "--state-dir"])
        .arg(dir.path().join("other-state"))
        .arg("--run-dir")
        .arg(&first.run_dir)
        .output()
        .unwrap();
    first.stop();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another ebpfh monitor (pid"), "{err}");
    assert!(err.contains("--run-dir"), "{err}");
}

/// A full kernel table is shown as full, never as more than full (slot 0 and row 0 are
/// reserved); client output to a closed pipe ends quietly and to a full disk says so.
#[test]
fn root_capacity_is_counted_consistently_and_clients_handle_closed_output() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mon = Monitor::start(
        dir.path(),
        &dir.path().join("state"),
        &["--max-profiles", "16", "--max-rows", "64"],
    );
    // More distinct executables than the table holds: copies of `true` are new inodes.
    for i in 0..24 {
        let copy = dir.path().join(format!("true{i}"));
        std::fs::copy("/bin/true", &copy).unwrap();
        run(&copy, &[]);
    }
    let status = mon.client_json(&["status"]);
    assert_eq!(status["profiles_max"], 15, "{status}");
    assert_eq!(status["profiles_used"], 15, "the table is full: {status}");
    assert_eq!(status["rows_max"], 63, "{status}");
    assert!(
        status["rows_used"].as_u64() <= status["rows_max"].as_u64(),
        "{status}"
    );
    let text = String::from_utf8_lossy(&mon.client(&["status"]).stdout).to_string();
    assert!(text.contains("capacity     15/15 profiles"), "{text}");
    // Every used slot is listed, and no slot past the table.
    assert_eq!(mon.client_json(&["profiles"]).as_array().unwrap().len(), 15);

    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .arg("--run-dir")
        .arg(&mon.run_dir)
        .args(["ps", "-t"])
        .stdout(std::process::Stdio::from(writer))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .arg("--run-dir")
        .arg(&mon.run_dir)
        .arg("status")
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "ebpfh: cannot write to standard output: No space left on device (os error 28)"
    );
}

/// `ebpfh accept` through the real client: refused in one sentence for a profile that is not
/// normal or that nobody has; on a normal profile it makes what was pending normal behaviour,
/// and `profiles` says what the profile waits for meanwhile.
#[test]
fn root_accept_makes_pending_pairs_normal_and_says_why_not() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &["--log-quiet"]);
    run(&prog, &[]);
    let one_sentence = |mon: &Monitor, args: &[&str], what: &str| {
        let out = mon.client(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(what), "{args:?}: {err}");
    };
    one_sentence(
        &mon,
        &["accept", "--profile", &key],
        "the profile is not normal yet, so nothing it learned is pending",
    );
    one_sentence(
        &mon,
        &["accept", "--profile", "/no/such/program"],
        "no profile matches '/no/such/program'",
    );
    let profiles = mon.client_json(&["profiles"]);
    let p = profile_of(&profiles, &key).unwrap();
    assert!(
        p["progress"]
            .as_str()
            .unwrap()
            .contains("runs without a new pair"),
        "{p}"
    );

    mon.train_to_normal(&prog, &[]);
    one_sentence(
        &mon,
        &["accept", "--profile", &key],
        "the profile has nothing pending to accept",
    );
    // A small backdoor (6 writes), twice: quiet novelty the first time, pending after it; the
    // second run teaches nothing new, only shows the pending pairs again. Both are counted as
    // quiet incidents (their lines written because of --log-quiet), neither is an alarm.
    let first = run(&prog, &["x"]);
    let once = mon.wait_for("incident", |e| e["pid"] == first, Duration::from_secs(10));
    let once = once.expect("the first backdoor run was not counted");
    assert_eq!(
        (&once["alarm"], &once["alarm_reason"]),
        (&json!(false), &json!("minor"))
    );
    assert!(once["novel_calls"].as_u64().unwrap() > 0, "{once}");
    let second = run(&prog, &["x"]);
    let again = mon.wait_for("incident", |e| e["pid"] == second, Duration::from_secs(10));
    let again = again.expect("the second backdoor run was not counted");
    assert_eq!(
        (&again["alarm"], &again["novel_calls"]),
        (&json!(false), &json!(0)),
        "{again}"
    );
    assert_eq!(again["anomalous_calls"], once["anomalous_calls"]);
    assert!(anomalies_of(&mon.events(), &[first, second]).is_empty());
    let profiles = mon.client_json(&["profiles"]);
    let p = profile_of(&profiles, &key).unwrap();
    assert!(p["pending"].as_u64().unwrap() > 0, "{p}");
    assert!(p["progress"].as_str().unwrap().contains("pending"), "{p}");
    let done = mon.client_json(&["accept", "--profile", &key]);
    assert_eq!(done["done"]["profile"]["pending"], 0, "{done}");
    // Accepted: the backdoor is normal behaviour now.
    let third = run(&prog, &["x"]);
    std::thread::sleep(Duration::from_millis(500));
    mon.stop();
    assert!(
        anomalies_of(&mon.events(), &[third]).is_empty(),
        "the accepted backdoor was still flagged"
    );
    let accepted = mon
        .events_of("command")
        .into_iter()
        .filter(|e| e["command"] == "accept" && e["result"] == "ok")
        .count();
    assert_eq!(accepted, 1);
}
