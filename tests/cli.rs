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
fn an_unknown_lifecycle_names_the_value_and_the_choices() {
    for args in [
        &["--headless", "--lifecycle", "pH2"][..],
        &["replay", "--lifecycle", "pH2", "x.ebt"][..],
        &["record", "--lifecycle", "pH2", "-o", "x.ebt", "--", "true"][..],
    ] {
        let out = ebpfh().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: invalid value 'pH2' for '--lifecycle <NAME>'"),
            "{args:?}: {err}"
        );
        assert!(err.contains("[possible values: ebpfh, ph]"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
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

/// Global options work before the subcommand as well as after it.
#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    for args in [
        vec!["--run-dir", run_dir.to_str().unwrap(), "status"],
        vec!["-v", "--run-dir", run_dir.to_str().unwrap(), "status"],
        vec!["status", "--run-dir", run_dir.to_str().unwrap()],
    ] {
        let out = ebpfh().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("no socket at {}/control.sock", run_dir.display())),
            "{args:?}: {err}"
        );
    }
    // A monitor flag before a subcommand would be ignored: it is refused instead.
    let out = ebpfh().args(["--headless", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'--headless' belongs to the monitor"), "{err}");
}

#[test]
fn durations_past_the_maximum_are_refused() {
    let out = ebpfh()
        .args(["--headless", "--normal-wait", "500y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'500y' is longer than the longest duration ebpfh takes, 100years"),
        "{err}"
    );
}

/// Bytes that are no trace: fixed pseudo-random ones (an LCG, so the test is repeatable) and a
/// real binary.
#[test]
fn replay_refuses_files_without_a_single_record() {
    let dir = tempfile::tempdir().unwrap();
    let noise = dir.path().join("noise");
    let mut x: u32 = 12345;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&noise, bytes).unwrap();
    let ls = std::path::Path::new("/bin/ls");
    for format in ["strace", "pid-nr", "adfa"] {
        for file in [noise.as_path(), ls] {
            let out = ebpfh()
                .args(["replay", "--normal-wait", "5calls", "--format", format])
                .arg(file)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{format} {file:?}: {err}");
            assert!(out.stdout.is_empty(), "{format} {file:?}");
            assert!(
                err.starts_with(&format!("ebpfh: '{}' line 1 is not ", file.display())),
                "{format} {file:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}

fn trace_fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay/unm.txt")
}

/// Output to a pipe nobody reads ends quietly, as coreutils do; a full disk gets one sentence.
#[test]
fn closed_pipes_end_quietly_and_full_disks_are_told() {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = ebpfh()
        .args(["replay", "--normal-wait", "5calls"])
        .arg(trace_fixture())
        .stdout(std::process::Stdio::from(writer))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = ebpfh()
        .args(["replay", "--normal-wait", "5calls"])
        .arg(trace_fixture())
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write to standard output"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
