//! Incidents on the real kernel: a burst far past the tolerize limit is one `incident` line, and
//! the alarm rule tells isolated or repeated novelty (counted) from alarms. The bursts that must
//! be alarms start with tests/fixtures/mix.h's (`burst mix N`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Extra writes the burst makes after its mixed start: far more than the tolerize limit (12) and
/// the locality frame (128), in a few milliseconds.
const BURST: u64 = 3000;

#[test]
fn root_a_burst_is_one_incident_with_bounded_anomaly_lines() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "burst");
    let key = stat_key(&prog);
    // Normal monitoring must go on through the whole burst whatever the anomaly limit's rule,
    // so the count below depends only on the detection rule.
    let mut mon = Monitor::start(
        dir.path(),
        &dir.path().join("state"),
        &["--anomaly-limit", "1000000000"],
    );
    mon.train_to_normal(&prog, &[]);
    let pid = run(&prog, &["mix", &BURST.to_string()]);
    let incident = mon.wait_for("incident", |e| e["pid"] == pid, Duration::from_secs(15));
    let status = mon.client_json(&["status"]);
    mon.stop();
    let incident = incident.expect("the burst ended in an incident line");

    let events = mon.events();
    let lost: u64 = events
        .iter()
        .filter(|e| e["event"] == "events_lost")
        .filter_map(|e| e["lost"]["anomaly"].as_u64())
        .sum();
    // Trained on runs with one write: each call of the mixed start misses (mix.h), and so does
    // each extra write (write <- write). The getppid calls after them are not anomalous:
    // training saw getppid with a write at every distance 1-8 (the greeting before the first
    // eight of them).
    let calls = incident["anomalous_calls"].as_u64().unwrap();
    assert_eq!(calls + lost, MIX_CALLS + BURST, "{incident}");
    assert_eq!(incident["profile"], key);
    assert_eq!(incident["exe"], prog.to_str().unwrap());
    assert_eq!(incident["tid"], pid);
    assert_eq!(incident["reason"], "idle", "the burst ends in clean calls");
    assert_eq!(incident["alarm_reason"], "tolerize_limit", "{incident}");
    if lost == 0 {
        let closes = MIX_CALLS - MIX_WRITES;
        let want = serde_json::json!({ "write": calls - closes, "close": closes });
        assert_eq!(incident["syscalls"], want);
    }
    assert_eq!(
        incident["max_lfc"], 128,
        "128 anomalies in a row fill the frame"
    );
    let first: Vec<&str> = incident["first_sequence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(first.len(), 9);
    assert_eq!(
        &first[7..],
        ["write", "write"],
        "the greeting, then the mixed start's first write"
    );
    assert!(incident["first"].as_str() <= incident["last"].as_str());

    let about_pid: Vec<&Value> = events.iter().filter(|e| e["pid"] == pid).collect();
    let incidents = about_pid
        .iter()
        .filter(|e| e["event"] == "incident")
        .count();
    let anomaly_lines = about_pid.iter().filter(|e| e["event"] == "anomaly").count() as u64;
    assert_eq!(incidents, 1, "one burst, one incident");
    assert_eq!(
        anomaly_lines, 5,
        "the default keeps the first 5 anomaly lines"
    );
    assert_eq!(incident["anomaly_lines"], anomaly_lines);
    assert_eq!(incident["anomaly_lines_suppressed"], calls - anomaly_lines);
    assert!(
        about_pid.len() <= 10,
        "{} lines about the burst: {about_pid:#?}",
        about_pid.len()
    );

    // ebpfh status counts every anomalous call, with a line or not, and lists the incident
    // (the host's other programs, trained with a 2 s wait, may add their own).
    assert!(status["anomalies"].as_u64().unwrap() >= calls, "{status}");
    assert!(status["incidents"].as_u64().unwrap() >= 1);
    let recent = status["recent_incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["pid"] == pid)
        .unwrap_or_else(|| panic!("the burst is among the recent incidents: {status}"));
    assert_eq!(recent["anomalous_calls"], calls);
    assert_eq!(recent["syscalls"][0], "write");
}

/// The alarm rule (src/incident.rs): one extra write (an isolated novelty), a burst of 8 (up to
/// the tolerize limit) and a burst of 20 identical writes (above it, but only eight of them
/// teach a new pair) write no line but are counted; a system call the program never made is an
/// alarm at once, with LFC 2; a burst above the tolerize limit with as many calls that teach
/// something new is an alarm.
#[test]
fn root_novelty_up_to_the_tolerize_limit_is_counted_and_new_calls_or_bursts_alarm() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "burst");
    let mut mon = Monitor::start(
        dir.path(),
        &dir.path().join("state"),
        &["--anomaly-limit", "1000000000"],
    );
    mon.train_to_normal(&prog, &[]);
    let before = mon.client_json(&["status"]);
    let isolated = run(&prog, &["1"]);
    let medium = run(&prog, &["8"]);
    let new_call = run(&prog, &["uname"]);
    let repeat = run(&prog, &["20"]);
    let burst = run(&prog, &["mix", "20"]);
    let unknown = mon.wait_for(
        "incident",
        |e| e["pid"] == new_call,
        Duration::from_secs(15),
    );
    let unknown = unknown.expect("the new system call is an alarm");
    let alarm = mon.wait_for("incident", |e| e["pid"] == burst, Duration::from_secs(15));
    let alarm = alarm.expect("the burst is an alarm");
    let status = mon.client_json(&["status"]);
    mon.stop();
    let events = mon.events();

    assert_eq!(unknown["alarm"], true);
    assert_eq!(unknown["alarm_reason"], "unknown_call", "{unknown}");
    assert_eq!(unknown["unknown_calls"], 1);
    assert_eq!(unknown["max_lfc"], 2, "uname, then the exit after it");
    let lines = anomalies_of(&events, &[new_call]);
    let uname = lines
        .iter()
        .find(|l| l["syscall"]["name"] == "uname")
        .expect("uname has its anomaly line");
    assert_eq!(
        (
            &uname["misses"],
            &uname["new_pairs"],
            &uname["unknown_call"]
        ),
        (&8.into(), &8.into(), &true.into())
    );

    assert_eq!(alarm["alarm_reason"], "tolerize_limit", "{alarm}");
    assert_eq!(alarm["max_lfc"], MIX_CALLS + 20);
    assert!(alarm["novel_calls"].as_u64().unwrap() > 12, "{alarm}");
    assert_eq!(anomalies_of(&events, &[burst]).len(), 5);

    for pid in [isolated, medium, repeat] {
        let about: Vec<&Value> = events.iter().filter(|e| e["pid"] == pid).collect();
        assert!(
            about
                .iter()
                .all(|e| e["event"] != "anomaly" && e["event"] != "incident"),
            "pid {pid} wrote an alarm: {about:#?}"
        );
    }
    // Counted: 1 + 8 + 2 + 20 + 36 anomalous calls, and the three quiet incidents (they end idle,
    // 2 s after their last call, before the last run's alarm; the host's other programs, trained
    // with a 2 s wait, may add their own).
    let n = |s: &Value, k: &str| s[k].as_u64().unwrap();
    assert!(
        n(&status, "anomalies") - n(&before, "anomalies") >= 31 + MIX_CALLS + 20,
        "{status}"
    );
    assert!(
        n(&status, "quiet_incidents") - n(&before, "quiet_incidents") >= 3,
        "{status}"
    );
}

/// `--log-quiet` writes the quiet incidents, marked, with no anomaly line of their own.
#[test]
fn root_log_quiet_writes_quiet_incidents() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "burst");
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &["--log-quiet"]);
    mon.train_to_normal(&prog, &[]);
    let pid = run(&prog, &["1"]);
    let quiet = mon.wait_for("incident", |e| e["pid"] == pid, Duration::from_secs(15));
    mon.stop();
    let quiet = quiet.expect("the quiet incident is written");
    assert_eq!(
        (&quiet["alarm"], &quiet["alarm_reason"]),
        (&false.into(), &"minor".into())
    );
    assert_eq!(
        (&quiet["anomalous_calls"], &quiet["max_lfc"]),
        (&1.into(), &1.into())
    );
    assert_eq!(
        (&quiet["anomaly_lines"], &quiet["anomaly_lines_suppressed"]),
        (&0.into(), &1.into())
    );
    assert!(anomalies_of(&mon.events(), &[pid]).is_empty());
}

#[test]
fn root_anomaly_lines_can_be_all_of_them() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "burst");
    let mut mon = Monitor::start(
        dir.path(),
        &dir.path().join("state"),
        &["--anomaly-limit", "1000000000", "--anomaly-lines", "100000"],
    );
    mon.train_to_normal(&prog, &["0"]);
    let pid = run(&prog, &["mix", "40"]);
    let incident = mon.wait_for("incident", |e| e["pid"] == pid, Duration::from_secs(15));
    mon.stop();
    let incident = incident.expect("an incident line");
    let lines = anomalies_of(&mon.events(), &[pid]);
    let calls = MIX_CALLS + 40;
    assert_eq!(incident["anomalous_calls"], calls);
    assert_eq!(
        lines.len() as u64,
        calls,
        "every anomalous call has its line"
    );
    assert_eq!(incident["anomaly_lines_suppressed"], 0);
    // Stderr repeats only the first 5 of them (mix.h's "wwwcc"), says so once, and has the
    // incident.
    let stderr = mon.stderr_text();
    let about = |what: &str| stderr.matches(&format!("{what} in pid {pid} ")).count();
    assert_eq!(about("anomaly: write"), 3, "{stderr}");
    assert_eq!(about("anomaly: close"), 2, "{stderr}");
    assert_eq!(about("more anomalies"), 1, "{stderr}");
    assert_eq!(
        about(&format!("incident: {calls} anomalous calls")),
        1,
        "{stderr}"
    );
}

/// The monitor and `ebpfh replay` (online) see the same calls (a recording made while the
/// monitor runs, each with its own kernel instance) and must write the same incident.
#[test]
fn root_online_replay_writes_the_monitors_incident() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "burst");
    let key = stat_key(&prog);
    let limit = ["--anomaly-limit", "1000000000"];
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &limit);
    let trace = dir.path().join("burst.ebt");
    let p = prog.display();
    // Train, wait out the normal wait (2 s in both), become normal, then the burst.
    let script = format!("for i in $(seq 30); do {p}; done; sleep 3; {p}; {p}; {p} mix 400");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args(["record", "-o"])
        .arg(&trace)
        .args(["--normal-wait", NORMAL_WAIT])
        .args(limit)
        .args(["--", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let live = mon.wait_for("incident", |e| e["profile"] == key, Duration::from_secs(15));
    mon.stop();
    let live = live.expect("the monitor wrote an incident for the burst");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .arg("replay")
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .filter(|l: &Value| l["profile"] == key)
        .collect();
    let incidents: Vec<&Value> = replayed
        .iter()
        .filter(|l| l["event"] == "incident")
        .collect();
    assert_eq!(incidents.len(), 1, "{replayed:#?}");
    let again = incidents[0];
    // Not compared: times (each kernel instance stamps calls with its own coarse clock), uid
    // (a trace has none), comm and exe (see the README on what replay fills in).
    for field in [
        "pid",
        "tid",
        "ppid",
        "profile",
        "profile_state",
        "reason",
        "anomalous_calls",
        "max_lfc",
        "syscalls",
        "first_sequence",
        "anomaly_lines",
        "anomaly_lines_suppressed",
        // What the kernel marked on each anomaly (new pairs, unknown calls), the model too.
        "alarm",
        "alarm_reason",
        "unknown_calls",
        "novel_calls",
    ] {
        assert_eq!(again[field], live[field], "{field}: {again} vs {live}");
    }
    assert_eq!(live["anomalous_calls"], MIX_CALLS + 400);
    // And the same anomaly lines: the first five calls of the burst.
    let pid = live["pid"].clone();
    let lines = |ls: Vec<Value>| -> Vec<(Value, Value, (Value, Value))> {
        ls.into_iter()
            .filter(|l| l["event"] == "anomaly" && l["pid"] == pid)
            .map(|l| {
                let marks = (l["new_pairs"].clone(), l["unknown_call"].clone());
                (l["syscall"].clone(), l["sequence"].clone(), marks)
            })
            .collect()
    };
    let live_lines = lines(mon.events());
    assert_eq!(live_lines.len(), 5);
    assert_eq!(lines(replayed), live_lines);
}

/// A lone anomaly reaches the log while nothing else happens: the monitor writes its lines when
/// the ring buffer goes idle, not when a buffer fills or the next event comes.
#[test]
fn root_a_lone_anomaly_is_in_the_log_while_its_process_waits() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "pause");
    let key = stat_key(&prog);
    let mut mon = Monitor::start(
        dir.path(),
        &dir.path().join("state"),
        &["--anomaly-limit", "1000000000"],
    );
    mon.train_to_normal(&prog, &[]);
    let mut child = std::process::Command::new(&prog)
        .arg("wait")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let line = mon.wait_for(
        "anomaly",
        |e| e["pid"] == pid && e["syscall"]["name"] == "uname",
        Duration::from_secs(10),
    );
    // The process was blocked in its read all along: no call of its own flushed the line.
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits for its stdin"
    );
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    mon.stop();
    let line = line.expect("the anomaly's line is in the log while its process waits");
    assert_eq!(line["profile"], key);
    assert_eq!(line["exe"], prog.to_str().unwrap());
}
