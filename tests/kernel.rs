//! Root integration tests: the real `ebpfh` binary loads and attaches the real BPF program, real
//! programs run, and the JSON lines it writes are checked. They never skip: without root, or if
//! the kernel refuses the program, they fail and say why.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

fn names(seq: &Value) -> Vec<String> {
    seq.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The seed thesis's demonstration: train a program to normal, run its hidden backdoor, see it.
#[test]
fn root_backdoor_is_detected_and_normal_runs_stay_quiet() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);

    let created = mon.wait_for(
        "profile_created",
        |e| e["profile"] == key,
        Duration::from_secs(1),
    );
    let started = mon.train_to_normal(&prog, &[]);
    assert_eq!(started["exe"], prog.to_str().unwrap());
    // The line waits for the executable's digest (the hashing thread may still be busy with
    // bigger files, as on an emulated CPU), at most the monitor's line wait of 10 s.
    let created = created.or_else(|| {
        mon.wait_for(
            "profile_created",
            |e| e["profile"] == key,
            Duration::from_secs(30),
        )
    });
    let created = created.expect("a profile_created event for the test program");
    assert_eq!(created["exe"], prog.to_str().unwrap());

    let backdoor = run(&prog, &[BACKDOOR]);
    let quiet: Vec<u32> = (0..5).map(|_| run(&prog, &[])).collect();
    // The last run's exit_group is processed before the process is reaped; give the ring a moment.
    mon.wait_for("anomaly", |e| e["pid"] == backdoor, Duration::from_secs(5));
    mon.stop();

    let events = mon.events();
    let found = anomalies_of(&events, &[backdoor]);
    assert!(
        !found.is_empty(),
        "no anomaly for the backdoor run; events:\n{events:#?}"
    );
    for a in &found {
        assert_eq!(a["exe"], prog.to_str().unwrap());
        assert_eq!(a["profile"], key, "profile key must equal stat's dev:ino");
        assert_eq!(a["comm"], "anomaly");
        assert_eq!(a["tid"], a["pid"]);
        let seq = names(&a["sequence"]);
        assert_eq!(seq.len(), 9);
        assert_eq!(
            seq[8],
            a["syscall"]["name"].as_str().unwrap(),
            "the window ends with the call"
        );
        let misses = a["misses"].as_u64().unwrap();
        assert!((1..=8).contains(&misses));
    }
    assert!(
        found.iter().any(|a| a["syscall"]["name"] == "write"),
        "write is among the anomalous calls"
    );
    // The locality frame counts them up: the LFC of successive anomalies never drops here.
    let lfcs: Vec<u64> = found.iter().map(|a| a["lfc"].as_u64().unwrap()).collect();
    assert!(
        lfcs.windows(2).all(|w| w[1] >= w[0]),
        "LFC sequence {lfcs:?}"
    );

    let false_alarms = anomalies_of(&events, &quiet);
    assert!(
        false_alarms.is_empty(),
        "normal runs raised anomalies: {false_alarms:#?}"
    );
}

/// A normal profile stays normal across a restart and keeps detecting without retraining.
#[test]
fn root_profiles_survive_a_restart() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);

    let mut first = Monitor::start(dir.path(), &state, &[]);
    first.train_to_normal(&prog, &[]);
    first.stop_with(Signal::SIGTERM);
    let stopped = first.events_of("monitor_stopped");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["reason"], "SIGTERM");
    assert!(stopped[0]["profiles_saved"].as_u64().unwrap() >= 1);
    let files: Vec<_> = fs::read_dir(state.join("profiles")).unwrap().collect();
    assert!(!files.is_empty(), "no profile files were written");

    let second_dir = dir.path().join("second");
    fs::create_dir(&second_dir).unwrap();
    let mut second = Monitor::start(&second_dir, &state, &[]);
    let started = second.events_of("monitor_started");
    assert!(started[0]["profiles_loaded"].as_u64().unwrap() >= 1);
    let backdoor = run(&prog, &[BACKDOOR]);
    // By the profile too: on a slow machine the test harness's own profile may be normal by
    // now, and the child's calls between fork and exec may be anomalous in it.
    let hit = second.wait_for(
        "anomaly",
        |e| e["pid"] == backdoor && e["profile"] == key,
        Duration::from_secs(10),
    );
    second.stop();
    let hit = hit.expect("the reloaded normal profile detects the backdoor");
    assert_eq!(hit["profile_state"], "normal");
    assert_eq!(
        hit["exe"],
        prog.to_str().unwrap(),
        "the exe path is kept with the profile"
    );
    assert!(
        second
            .events_of("normal_started")
            .iter()
            .all(|e| e["profile"] != key),
        "a reloaded normal profile must not need to become normal again"
    );
}

/// A forked child (no exec) carries its parent's profile: its anomalies are reported under it.
#[test]
fn root_fork_children_inherit_the_profile() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "forker");
    let key = stat_key(&prog);
    // The child's 6 extra writes are quiet novelty: --log-quiet writes their incident.
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &["--log-quiet"]);
    mon.train_to_normal(&prog, &[]);

    let parent = run(&prog, &["backdoor"]);
    let hit = mon.wait_for("incident", |e| e["ppid"] == parent, Duration::from_secs(10));
    mon.stop();
    let hit = hit.unwrap_or_else(|| {
        panic!(
            "no anomaly from forker's child; events:\n{:#?}",
            mon.events()
        )
    });
    assert_ne!(hit["pid"], parent, "the anomaly is the child's");
    assert_eq!(hit["profile"], key);
    assert_eq!(hit["exe"], prog.to_str().unwrap());
    assert!(
        !mon.events()
            .iter()
            .any(|e| e["event"] == "incident" && e["pid"] == parent),
        "the parent did nothing new"
    );
}

/// exec switches a process to the new image's profile (same pid, new profile).
#[test]
fn root_exec_switches_the_profile() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let execer = build_fixture(dir.path(), "execer");
    let prog_key = stat_key(&prog);
    let execer_key = stat_key(&execer);
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);
    mon.train_to_normal(&prog, &[]);

    let pid = run(&execer, &[prog.to_str().unwrap(), BACKDOOR]);
    let hit = mon.wait_for("anomaly", |e| e["pid"] == pid, Duration::from_secs(10));
    mon.stop();
    let hit = hit.expect("the exec'd backdoor is detected in the same pid");
    assert_eq!(hit["profile"], prog_key);
    assert_eq!(hit["exe"], prog.to_str().unwrap());
    let execer_created = mon
        .events_of("profile_created")
        .into_iter()
        .find(|e| e["profile"] == execer_key);
    let execer_created = execer_created.expect("execer got its own profile first");
    assert_eq!(execer_created["pid"], pid);
    assert_eq!(execer_created["exe"], execer.to_str().unwrap());
}

/// Signal handlers run in their own frame: their calls never share a window with the calls of
/// the code they interrupted, wherever the signal lands.
#[test]
fn root_signal_handlers_get_their_own_frame() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "sighandler");
    let key = stat_key(&prog);
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &["--log-sequences"]);
    for _ in 0..5 {
        run(&prog, &[]);
    }
    mon.wait_for(
        "new_sequence",
        |e| e["profile"] == key,
        Duration::from_secs(5),
    );
    mon.stop();

    let handler = ["getppid", "getuid", "rt_sigreturn"];
    let main_loop = ["getpid", "getpgrp", "getegid"];
    let seqs: Vec<Vec<String>> = mon
        .events_of("new_sequence")
        .into_iter()
        .filter(|e| e["profile"] == key)
        .map(|e| names(&e["sequence"]))
        .collect();
    assert!(
        seqs.iter().any(|s| s.iter().any(|c| c == "getppid")),
        "the handler ran: {seqs:#?}"
    );
    for s in &seqs {
        let has_handler = s.iter().any(|c| handler.contains(&c.as_str()));
        let has_loop = s.iter().any(|c| main_loop.contains(&c.as_str()));
        assert!(
            !(has_handler && has_loop),
            "a window mixes handler and interrupted calls: {s:?}"
        );
        if s.iter().any(|c| c == "getppid") {
            // A handler frame starts empty.
            assert_eq!(s[0], "EMPTY", "{s:?}");
        }
    }
}

/// A corrupt profile file is set aside with a warning; the monitor runs on.
#[test]
fn root_corrupt_profile_is_set_aside() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let profiles = state.join("profiles");
    fs::create_dir_all(&profiles).unwrap();
    fs::write(
        profiles.join("2049-12345.prof"),
        b"EBPFHPRF\x01\x00\x00\x00truncated",
    )
    .unwrap();

    let mut mon = Monitor::start(dir.path(), &state, &[]);
    let started = mon.events_of("monitor_started");
    mon.stop();
    assert_eq!(started[0]["profiles_set_aside"], 1);
    assert!(
        !profiles.join("2049-12345.prof").exists(),
        "the corrupt file was moved away"
    );
    let quarantine: Vec<_> = fs::read_dir(state.join("quarantine")).unwrap().collect();
    assert_eq!(quarantine.len(), 1);
    let stderr = mon.stderr_text();
    assert!(
        stderr.contains("2049-12345.prof"),
        "the warning names the file:\n{stderr}"
    );
}

/// SIGHUP makes the monitor reopen its log by name, so logrotate can move the old one away.
#[test]
fn root_sighup_reopens_the_log() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);
    let rotated = dir.path().join("events.jsonl.1");
    fs::rename(&mon.log, &rotated).unwrap();
    mon.signal(Signal::SIGHUP);
    // Reopening creates the file again: once it exists, the next lines go there.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !mon.log.exists() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        mon.log.exists(),
        "SIGHUP did not reopen the log; the monitor's stderr:\n{}",
        mon.stderr_text()
    );
    run(&prog, &[]);
    let seen = mon.wait_for("profile_created", |e| e["profile"] == key, CREATED_WAIT);
    mon.stop();
    assert!(seen.is_some(), "no line reached the reopened log");
    let old = fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("monitor_started"),
        "the old file kept what was written before"
    );
    assert!(
        mon.events_of("monitor_stopped").len() == 1,
        "the new file gets later lines"
    );
}

/// The overflow path on purpose: a one-page ring buffer and thousands of anomalies in a burst.
/// Every anomalous call is either delivered as a line or counted as lost, exactly.
#[test]
fn root_an_anomaly_storm_counts_every_lost_event() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    // Limits high enough that the storm neither ends normal monitoring nor resets the profile.
    // pH's lifecycle: under the default, any process on this host that has been quiet for the
    // short normal wait freezes and becomes normal too, and its anomalies would join the lost
    // count, which covers every profile.
    let args = [
        "--lifecycle",
        "ph",
        "--ring-bytes",
        "4096",
        "--anomaly-limit",
        "1000000",
        "--tolerize-limit",
        "1000",
    ];
    let mut mon = Monitor::start(dir.path(), &state, &args);
    mon.train_to_normal(&prog, &[]);
    let pid = run(&prog, &["20000"]);
    mon.wait_for(
        "events_lost",
        |e| e["lost"]["anomaly"].as_u64() > Some(0),
        Duration::from_secs(10),
    );
    mon.stop();

    let events = mon.events();
    // Every delivered anomaly is counted in the incidents (most have no line of their own).
    let incident_calls = |pred: &dyn Fn(&Value) -> bool| -> u64 {
        events
            .iter()
            .filter(|e| e["event"] == "incident" && pred(e))
            .map(|e| e["anomalous_calls"].as_u64().unwrap())
            .sum()
    };
    let delivered = incident_calls(&|e| e["pid"] == pid);
    let lines = anomalies_of(&events, &[pid]).len() as u64;
    let lost: u64 = mon
        .events_of("events_lost")
        .iter()
        .filter_map(|e| e["lost"]["anomaly"].as_u64())
        .sum();
    assert!(lost > 0, "a 4 KiB ring cannot hold 20000 anomalies");
    assert!(delivered > 0);
    assert!(lines <= delivered);
    // The kernel's own counts, from the profile files the monitor saved at exit.
    let store = ebpfh::store::Store::open(&state).unwrap();
    let saved = store.load_all().profiles;
    let for_profile = incident_calls(&|e| e["profile"] == key);
    assert_eq!(
        for_profile, delivered,
        "only the storm run was anomalous in its profile"
    );
    // Lost events are counted per kind, not per profile, and another program that became
    // normal meanwhile (the test harness on a slow machine) may have lost anomalies in the
    // same window: so count every profile's anomalies, delivered or lost.
    let delivered_all = incident_calls(&|_| true);
    let kernel_all: u64 = saved.iter().map(|p| p.anomalies).sum();
    let storm = saved.iter().find(|p| p.key.to_string() == key).unwrap();
    assert!(
        storm.anomalies > 20000,
        "every write of the backdoor is anomalous: {}",
        storm.anomalies
    );
    assert_eq!(
        delivered_all + lost,
        kernel_all,
        "delivered {delivered_all} + lost {lost} != the kernel's count"
    );
}

/// Trains the `int80` fixture to normal, runs it with `arg` (which makes a call the profile never
/// saw) and returns the run's anomalies, every one with its own line, and what `profile show`
/// printed of the profile afterwards.
fn int80_run(arg: &str) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "int80");
    let all_lines = ["--anomaly-lines", "1000000"];
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &all_lines);
    mon.train_to_normal(&prog, &[]);
    let pid = run(&prog, &[arg]);
    let hit = mon.wait_for("anomaly", |e| e["pid"] == pid, Duration::from_secs(10));
    let out = mon.client(&["profile", "show", prog.to_str().unwrap()]);
    mon.stop();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown}");
    assert!(hit.is_some(), "the `{arg}` call was new to the profile");
    (anomalies_of(&mon.events(), &[pid]), shown)
}

/// The names of the anomalous calls, and whether any sequence holds `name`.
fn calls_and_sequences(found: &[Value], name: &str) -> (Vec<String>, bool) {
    let calls = found
        .iter()
        .map(|a| a["syscall"]["name"].as_str().unwrap().to_string())
        .collect();
    let in_sequence = found
        .iter()
        .any(|a| names(&a["sequence"]).contains(&name.to_string()));
    (calls, in_sequence)
}

/// A 32-bit call from a 64-bit program is OTHER, never the native call with that number.
#[test]
fn root_int80_calls_are_not_read_as_native_calls() {
    require_root();
    let (found, _) = int80_run("int80");
    let (calls, in_sequence) = calls_and_sequences(&found, "writev");
    assert!(calls.contains(&"OTHER".to_string()), "{calls:?}");
    assert!(
        !calls.contains(&"writev".to_string()) && !in_sequence,
        "ia32 getpid (20) was read as native writev: {found:?}"
    );
}

/// A native number no x86_64 call has (the kernel keeps no column for 336..423) is OTHER, and
/// the profile learned the pairs as OTHER's, not as call 400's.
#[test]
fn root_numbers_no_call_has_are_other() {
    require_root();
    let (found, shown) = int80_run("gap");
    let (calls, in_sequence) = calls_and_sequences(&found, "syscall_400");
    assert!(calls.contains(&"OTHER".to_string()), "{calls:?}");
    assert!(!in_sequence, "{found:?}");
    assert!(shown.contains("OTHER"), "{shown}");
    assert!(!shown.contains("syscall_400"), "{shown}");
}

/// The flood pH's tolerize reset allowed is gone: a run far past the tolerize limit (`burst mix
/// 5000`: mix.h's 16 calls and 5000 anomalous writes, its LFC above 12 for thousands of calls,
/// an alarm) crosses the limit once
/// and yields one tolerize_limit line; repeated runs charge the anomaly budget once each and
/// then stop normal monitoring, after which nothing more is flagged.
#[test]
fn root_a_long_burst_tolerizes_once_and_the_budget_ends_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prog = build_fixture(dir.path(), "burst");
    let key = stat_key(&prog);
    // --log-quiet: run 3's one anomaly (LFC 1) is no alarm, but its incident line is written.
    let flags = ["--anomaly-limit", "2", "--log-quiet"];
    let mut mon = Monitor::start(dir.path(), &state, &flags);
    mon.train_to_normal(&prog, &[]);
    let pids: Vec<u32> = (0..5).map(|_| run(&prog, &["mix", "5000"])).collect();
    mon.wait_for(
        "normal_stopped",
        |e| e["profile"] == key,
        Duration::from_secs(120),
    )
    .expect("three anomalous runs exceed a budget of 2");
    mon.stop();
    let events = mon.events();
    let tolerized: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "tolerize_limit" && e["profile"] == key)
        .collect();
    // Runs 1 and 2 cross once each; run 3 stops normal monitoring at its first anomaly (LFC 1).
    assert_eq!(tolerized.len(), 2, "{tolerized:#?}");
    // Every call of runs 1 and 2 after the greeting is anomalous (and a few calls after them); run 3 has one
    // anomaly, at which normal monitoring stops; runs 4 and 5 run a training profile. The
    // incident lines count every anomalous call; the anomaly lines stay bounded.
    let counts: Vec<u64> = pids
        .iter()
        .map(|pid| {
            events
                .iter()
                .filter(|e| e["event"] == "incident" && e["pid"] == *pid)
                .map(|e| e["anomalous_calls"].as_u64().unwrap())
                .sum()
        })
        .collect();
    assert!(counts[0] >= 5000 && counts[1] >= 5000, "{counts:?}");
    assert_eq!(counts[2..], [1, 0, 0], "{counts:?}");
    let alarm = |pid: u32| {
        let e = events
            .iter()
            .find(|e| e["event"] == "incident" && e["pid"] == pid);
        e.map(|e| e["alarm"].clone())
    };
    assert_eq!(alarm(pids[0]), Some(true.into()));
    assert_eq!(
        alarm(pids[2]),
        Some(false.into()),
        "a single write is quiet"
    );
    for pid in &pids {
        assert!(anomalies_of(&events, &[*pid]).len() <= 5, "pid {pid}");
    }
}

/// The state and row of `prog`'s profile in `ebpfh profiles`.
fn profile_row(mon: &Monitor, prog: &std::path::Path) -> Value {
    let key = stat_key(prog);
    let profiles = mon.client_json(&["profiles"]);
    profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile"] == key)
        .unwrap_or_else(|| panic!("no profile for {}: {profiles}", prog.display()))
        .clone()
}

/// A child that is forked and then execs another program is a launch stub of its parent's
/// profile: 500 of them (each one a run that taught nothing, after the first) do not freeze a
/// profile that has made enough calls to freeze, while 30 children that exit without exec do.
#[test]
fn root_launch_stubs_do_not_freeze_a_profile_but_forked_workers_do() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "launcher");
    // A long wait: a profile with enough calls that learns nothing for the wait freezes by the
    // daemon rule, and 500 spawns take longer than the tests' 2 s on an emulated CPU.
    let mut mon = Monitor::start_waiting(dir.path(), &dir.path().join("state"), "1h", &[]);
    run(&prog, &["exec", "500"]);
    let row = profile_row(&mon, &prog);
    assert!(
        row["calls"].as_u64().unwrap() >= 1024,
        "enough calls to freeze: {row}"
    );
    assert_eq!(row["state"], "training", "{row}");
    run(&prog, &["work", "30"]);
    let row = profile_row(&mon, &prog);
    mon.stop();
    assert_ne!(row["state"], "training", "30 worker runs freeze it: {row}");
}
