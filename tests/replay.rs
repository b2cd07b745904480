//! `ebpfh replay`: each parser on hand-written fixtures, and the command end to end (no root).

use std::path::{Path, PathBuf};
use std::process::Command;

use ebpfh::profile::ProfileKey;
use ebpfh::replay::formats::{self, key_for, Format, GLOBAL};
use ebpfh::syscalls::{Abi, SYM_OTHER};
use ebpfh::trace::Record;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/replay")
        .join(name)
}

fn read(name: &str) -> (Vec<Record>, formats::TraceInfo) {
    let path = fixture(name);
    let format = formats::detect(&path).unwrap();
    let mut recs = Vec::new();
    let info = formats::read(&path, format, Abi::X86_64, &mut |r| recs.push(r.clone())).unwrap();
    (recs, info)
}

fn exe(path: &str) -> Record {
    Record::Exe {
        key: key_for(path),
        path: path.into(),
        script: String::new(),
    }
}

fn exec(tid: u32, key: ProfileKey) -> Record {
    Record::Exec {
        tid,
        tgid: tid,
        key,
        time: 0,
    }
}

fn call(tid: u32, nr: u16) -> Record {
    Record::Call { tid, nr, time: 0 }
}

fn untimed(recs: Vec<Record>) -> Vec<Record> {
    recs.into_iter()
        .map(|r| match r {
            Record::Call { tid, nr, .. } => Record::Call { tid, nr, time: 0 },
            Record::Exec { tid, tgid, key, .. } => Record::Exec {
                tid,
                tgid,
                key,
                time: 0,
            },
            Record::Fork {
                child,
                tgid,
                parent,
                ..
            } => Record::Fork {
                child,
                tgid,
                parent,
                time: 0,
            },
            Record::Exit { tid, .. } => Record::Exit { tid, time: 0 },
            Record::Signal { tid, .. } => Record::Signal { tid, time: 0 },
            other => other,
        })
        .collect()
}

/// `strace -f -o`: pid on every line, a child printing before its clone returns, an execve, a
/// signal with a handler (a frame) and one without (none), and a name the table lacks.
#[test]
fn strace_f_o_output_becomes_model_inputs() {
    let (recs, info) = read("strace-f-o.txt");
    let srv = key_for("/usr/bin/srv");
    let sh = key_for("/bin/sh");
    assert_eq!(
        recs,
        vec![
            call(100, 59), // the first execve belongs to the image before; untraced
            exe("/usr/bin/srv"),
            exec(100, srv),
            call(100, 12),
            call(100, 13),
            call(100, 56),
            Record::Fork {
                child: 101,
                tgid: 101,
                parent: 100,
                time: 0
            },
            call(101, 273),
            call(101, 59),
            call(100, 39),
            exe("/bin/sh"),
            exec(101, sh),
            call(101, 102),
            call(101, 231),
            Record::Exit { tid: 101, time: 0 },
            Record::Signal { tid: 100, time: 0 },
            call(100, 61),
            call(100, 15),
            call(100, SYM_OTHER),
            call(100, 231),
            Record::Exit { tid: 100, time: 0 },
        ]
    );
    assert!(!info.timed);
    assert_eq!(info.unknown_names.get("frobnicate"), Some(&1));
    assert_eq!(info.unknown_names.len(), 1);
}

/// strace -f to a terminal with -tt -T: the first process has no prefix until a second one
/// exists, then appears as `[pid 200]`; both are the same task.
#[test]
fn strace_terminal_output_with_times() {
    let (recs, info) = read("strace-tty-tt.txt");
    assert!(info.timed);
    let root = u32::MAX - 1;
    let srv = key_for("/usr/bin/srv");
    let noon = 12 * 3600 * 1_000_000_000u64;
    // Times are nanoseconds since midnight (strace -tt prints no date).
    assert!(recs.contains(&Record::Call {
        tid: root,
        nr: 12,
        time: noon + 200_000
    }));
    assert_eq!(
        untimed(recs),
        vec![
            call(root, 59),
            exe("/usr/bin/srv"),
            exec(root, srv),
            call(root, 12),
            call(root, 56),
            Record::Fork {
                child: 201,
                tgid: 201,
                parent: root,
                time: 0
            },
            call(201, 39),
            call(root, 61),
            call(201, 231),
            Record::Exit { tid: 201, time: 0 },
            // No handler was seen for SIGCHLD: no frame.
            call(root, 231),
            Record::Exit { tid: root, time: 0 },
        ]
    );
}

/// UNM: each pid is a process of the global profile; numbers past the table are OTHER.
#[test]
fn unm_pid_nr_lines() {
    assert_eq!(formats::detect(&fixture("unm.txt")).unwrap(), Format::PidNr);
    let (recs, _) = read("unm.txt");
    let g = key_for(GLOBAL);
    assert_eq!(
        recs,
        vec![
            exe(GLOBAL),
            exec(7, g),
            call(7, 5),
            call(7, 3),
            exec(9, g),
            call(9, 5),
            call(7, 6),
            call(9, 6),
            call(7, SYM_OTHER),
            Record::Exit { tid: 7, time: 0 },
            Record::Exit { tid: 9, time: 0 },
        ]
    );
}

/// ADFA-LD: one process per file, directories walked recursively in path order.
#[test]
fn adfa_directories_are_walked_in_order() {
    let inputs = ebpfh::replay::inputs(&[fixture("adfa")], None).unwrap();
    let names: Vec<String> = inputs
        .iter()
        .map(|i| {
            i.path
                .strip_prefix(fixture("adfa"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "Training_Data_Master/UTD-0001.txt",
            "Training_Data_Master/UTD-0003.txt",
            "Training_Data_Master/more/UTD-0002.txt"
        ]
    );
    assert!(inputs.iter().all(|i| i.format == Format::Adfa));
    let (recs, _) = read("adfa/Training_Data_Master/more/UTD-0002.txt");
    let g = key_for(GLOBAL);
    assert_eq!(
        recs,
        vec![
            exe(GLOBAL),
            exec(1, g),
            call(1, 6),
            call(1, 6),
            call(1, 63),
            call(1, 6),
            call(1, 42),
            Record::Exit { tid: 1, time: 0 }
        ]
    );
}

// ---- the command ----------------------------------------------------------------------------

fn ebpfh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ebpfh"))
}

/// A normal run of a made-up program: a prologue, `n` request loops, an epilogue.
fn normal_run(n: usize) -> Vec<u16> {
    let mut v = vec![59, 12, 9, 21, 257, 5, 9, 3];
    for i in 0..n {
        v.extend([232, 43, 0, 1, 3]);
        if i % 3 == 0 {
            v.extend([257, 0, 3]);
        }
    }
    v.extend([3, 231]);
    v
}

fn write_trace(dir: &Path, name: &str, calls: &[u16]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    let text: Vec<String> = calls.iter().map(u16::to_string).collect();
    std::fs::write(&p, text.join(" ") + "\n").unwrap();
    p
}

fn sets() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    let normal = dir.path().join("normal");
    let attack = dir.path().join("attack");
    for n in 1..=8 {
        write_trace(&train, &format!("t{n}.txt"), &normal_run(n));
    }
    for n in [2, 5, 7] {
        write_trace(&normal, &format!("n{n}.txt"), &normal_run(n));
    }
    for n in [3, 6] {
        // The loop breaks out into a shell: calls the program never makes.
        let mut v = normal_run(n);
        let at = v.len() - 2;
        v.splice(at..at, [57, 59, 33, 33, 33, 59]);
        write_trace(&attack, &format!("a{n}.txt"), &v);
    }
    (dir, train, normal, attack)
}

#[test]
fn evaluation_separates_attacks_with_auc_one() {
    let (dir, train, normal, attack) = sets();
    let csv = dir.path().join("scores.csv");
    let png = dir.path().join("roc.png");
    let out = ebpfh()
        .arg("replay")
        .arg("--train")
        .arg(&train)
        .arg("--normal")
        .arg(&normal)
        .arg("--attack")
        .arg(&attack)
        .arg("--json")
        .arg("--csv")
        .arg(&csv)
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["training"]["traces"], 8);
    assert_eq!(v["sets"]["normal"]["traces"], 3);
    assert_eq!(v["sets"]["normal"]["anomalous_calls"], 0);
    assert_eq!(v["sets"]["attack"]["flagged"]["any_anomaly"], 2);
    assert_eq!(v["detection_rate"]["any_anomaly"], 1.0);
    assert_eq!(v["false_alarm_rate"]["any_anomaly"], 0.0);
    for m in ["anomalous_calls", "max_lfc", "rate"] {
        assert_eq!(v["auc"][m], 1.0, "{m}");
    }
    let csv = std::fs::read_to_string(csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("set,path,calls,anomalous_calls,max_lfc,rate")
    );
    assert_eq!(lines.count(), 5);
    let png = std::fs::read(png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG was drawn");
}

#[test]
fn the_text_report_names_the_thresholds() {
    let (_dir, train, normal, attack) = sets();
    let out = ebpfh()
        .arg("replay")
        .args(["--format", "adfa", "--train"])
        .arg(&train)
        .arg("--normal")
        .arg(&normal)
        .arg("--attack")
        .arg(&attack)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "any anomaly",
        "LFC > 3",
        "LFC > 12",
        "detection rate",
        "ROC AUC",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
}

#[test]
fn online_replay_prints_the_monitors_lines() {
    let (_dir, train, _normal, attack) = sets();
    let out = ebpfh()
        .args(["replay", "--normal-wait", "100calls"])
        // Four passes over the normal runs: enough clean calls to freeze, then the wait.
        .args([&train, &train, &train, &train, &attack])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events[0], "profile_created");
    assert!(events.contains(&"normal_started"), "{events:?}");
    let anomaly = lines
        .iter()
        .find(|l| l["event"] == "anomaly")
        .expect("the attack is reported");
    assert_eq!(anomaly["exe"], GLOBAL);
    assert_eq!(anomaly["host"], "replay");
    assert_eq!(anomaly["sequence"].as_array().unwrap().len(), 9);
    assert_eq!(anomaly["syscall"]["name"], "fork");
}

#[test]
fn a_time_wait_on_untimed_input_is_refused() {
    let (_dir, train, _, _) = sets();
    let out = ebpfh().arg("replay").arg(&train).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no timestamps"), "{err}");
    assert!(err.contains("5000calls"), "{err}");
}

#[test]
fn foreign_and_truncated_recordings_get_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("x.ebt");
    std::fs::write(&foreign, "hello, I am a text file\n").unwrap();
    let out = ebpfh().arg("replay").arg(&foreign).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("ebpfh: '{}' is not an ebpfh trace", foreign.display())
    );

    let mut w = ebpfh::trace::Writer::new(Vec::new(), Abi::X86_64, 1).unwrap();
    let key = ProfileKey::file(1, 2);
    w.write(&exec(5, key)).unwrap();
    for _ in 0..10 {
        w.write(&call(5, 1)).unwrap();
    }
    let bytes = w.finish().unwrap();
    let cut = dir.path().join("cut.ebt");
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
    let out = ebpfh().arg("replay").arg(&cut).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "ebpfh: '{}' is truncated: it ends inside a record or before its footer",
            cut.display()
        )
    );
}

#[test]
fn unknown_strace_names_are_reported_once() {
    let out = ebpfh()
        .arg("replay")
        .arg("--train")
        .arg(fixture("strace-f-o.txt"))
        .arg("--normal")
        .arg(fixture("strace-f-o.txt"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("frobnicate").count(), 1, "{err}");
    assert!(err.contains("'frobnicate' (2)"), "{err}");
}
