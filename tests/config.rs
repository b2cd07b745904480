//! The configuration file with the real binary: its values reach the monitor, flags override
//! them, `ebpfh config` says where each came from, and a mistake is one sentence.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn ebpfh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args(args)
        .output()
        .expect("the ebpfh binary runs")
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("ebpfh.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The line of `ebpfh config` output that sets `key`.
fn line_of<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn config_names_the_origin_of_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "# tuned for web1\nnormal_wait = \"10m\"\nanomaly_limit = 7\n\nallow = [\"/usr/sbin/sshd\"]\n",
    );
    let out = ebpfh(&["config", "--config", &file, "--anomaly-limit", "9"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("# configuration file: {file}\n")),
        "{text}"
    );
    let wait = line_of(&text, "normal_wait");
    assert!(wait.starts_with("normal_wait = \"10m\""), "{wait}");
    assert!(wait.ends_with(&format!("# file {file}:2")), "{wait}");
    let limit = line_of(&text, "anomaly_limit");
    assert!(
        limit.starts_with("anomaly_limit = 9") && limit.ends_with("# flag"),
        "{limit}"
    );
    let allow = line_of(&text, "allow");
    assert!(allow.starts_with("allow = [\"/usr/sbin/sshd\"]"), "{allow}");
    assert!(allow.ends_with(":5"), "{allow}");
    let tol = line_of(&text, "tolerize_limit");
    assert!(
        tol.starts_with("tolerize_limit = 12") && tol.ends_with("# default"),
        "{tol}"
    );
}

#[test]
fn a_mistake_in_the_file_is_one_sentence_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        (
            "anomaly_limit = 7\nanomaly_limt = 8\n",
            ":2: unknown key 'anomaly_limt'",
        ),
        (
            "\n\nnormal_wait = 10\n",
            ":3: normal_wait: '10' is not a duration",
        ),
        ("respond = \"yes\"\n", ":1: respond must be true or false"),
        ("max_rows = 8\n", ":1: max_rows: 8 is not in 64.."),
        ("normal_wait = \"10m\n", ":1: "),
    ] {
        let file = write(dir.path(), text);
        let out = ebpfh(&["--headless", "--config", &file]);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("ebpfh: {file}{want}")),
            "{text:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one sentence: {err}");
    }
    let out = ebpfh(&["--headless", "--config", "/nonexistent/ebpfh.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "ebpfh: cannot read the configuration file '/nonexistent/ebpfh.toml': No such file or \
         directory (os error 2)"
    );
}

/// A real monitor takes its settings from the file, except where a flag says otherwise, and a
/// client finds it through the file's run_dir.
#[test]
fn root_the_monitor_runs_with_the_files_settings() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run_dir = dir.path().join("run");
    let file = write(
        dir.path(),
        &format!(
            "anomaly_limit = 7\ntolerize_limit = 5\nnormal_wait = \"10m\"\nrun_dir = {:?}\n",
            run_dir.to_str().unwrap()
        ),
    );
    // Monitor::start passes --normal-wait and --run-dir as flags; --tolerize-limit is added.
    let mut m = Monitor::start(
        dir.path(),
        &state,
        &["--config", &file, "--tolerize-limit", "6"],
    );
    let out = ebpfh(&["status", "--json", "--config", &file]);
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &status["settings"];
    assert_eq!(s["anomaly_limit"], 7, "{s}");
    assert_eq!(s["tolerize_limit"], 6, "the flag wins: {s}");
    assert_eq!(s["normal_wait"], NORMAL_WAIT, "the flag wins: {s}");
    m.stop();
}
