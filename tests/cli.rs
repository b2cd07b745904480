//! The sentences users read when they get something wrong: each names the problem and the fix.

mod common;

use std::process::Command;

use common::*;

fn ebpfh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ebpfh"))
}

#[test]
fn a_bad_duration_names_the_value_and_the_format() {
    let out = ebpfh()
        .args(["--headless", "--normal-wait", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'soon' is not a duration"), "{err}");
    assert!(
        err.contains("7d"),
        "the message shows the expected form: {err}"
    );
}

#[test]
fn a_zero_denominator_is_refused() {
    let out = ebpfh()
        .args(["--headless", "--normal-factor-den", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--normal-factor-den"));
}

/// Run as an unprivileged user (via setpriv), the monitor says it needs root, without a backtrace.
#[test]
fn root_non_root_users_are_told_to_use_sudo() {
    require_root();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_ebpfh"),
            "--headless",
        ])
        .output()
        .expect("setpriv (util-linux) runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "ebpfh: ebpfh must run as root to load its BPF programs; run it with sudo"
    );
}

/// A second monitor on the same state directory is refused and told who holds it.
#[test]
fn root_a_second_monitor_on_one_state_dir_is_refused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut first = Monitor::start(dir.path(), &state, &[]);
    let out = ebpfh()
        .args(["--headless", "--log", "-", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    first.stop();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another ebpfh monitor (pid"), "{err}");
    assert!(err.contains("--state-dir"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
