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

fn ebpfh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ebpfh"))
}

/// Runs `sh -c SCRIPT` as the unprivileged user nobody.
#[track_caller]
fn as_nobody(script: &str) {
    let st = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv (util-linux) runs");
    assert!(st.success(), "as nobody: {script}");
}

/// Runs a monitor that is expected to refuse to start; returns its stderr. A monitor that
/// hangs instead is stopped with SIGTERM after a while, so the test fails rather than waits.
#[track_caller]
fn refused_start(args: &[&std::ffi::OsStr]) -> String {
    let mut child = ebpfh()
        .arg("--headless")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    err
}

/// Directories an unprivileged user prepared (as the attacker did: a user-owned run
/// and state directory with the pid file pointing at a root-owned file) are refused, and
/// nothing is written through them.
#[test]
fn root_directories_another_user_controls_are_refused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let victim = base.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let hostile = base.join("hostile");
    std::fs::create_dir(&hostile).unwrap();
    nix::unistd::chown(&hostile, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    std::fs::set_permissions(base, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    as_nobody(&format!(
        "mkdir {h}/run {h}/state && ln -s {v} {h}/run/ebpfh.pid",
        h = hostile.display(),
        v = victim.display()
    ));
    let log = base.join("events.jsonl");
    let good_state = base.join("state");

    let err = refused_start(&[
        "--log".as_ref(),
        log.as_os_str(),
        "--state-dir".as_ref(),
        hostile.join("state").as_os_str(),
        "--run-dir".as_ref(),
        hostile.join("run").as_os_str(),
    ]);
    assert_eq!(
        err.trim(),
        format!(
            "ebpfh: refusing the state directory '{0}/state': '{0}/state' belongs to uid 65534, not root; use a directory that root owns all the way up to /",
            hostile.display()
        )
    );
    let err = refused_start(&[
        "--log".as_ref(),
        log.as_os_str(),
        "--state-dir".as_ref(),
        good_state.as_os_str(),
        "--run-dir".as_ref(),
        hostile.join("run").as_os_str(),
    ]);
    assert!(
        err.contains(&format!(
            "refusing the run directory '{}/run'",
            hostile.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

    // A root-owned directory inside one everybody can write (not sticky) is refused too.
    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let err = refused_start(&[
        "--log".as_ref(),
        log.as_os_str(),
        "--state-dir".as_ref(),
        open.join("state").as_os_str(),
    ]);
    assert!(
        err.contains(&format!(
            "'{}' can be written by other users (mode 777)",
            open.display()
        )),
        "{err}"
    );

    // profiles/ swapped for a symlink is refused before anything is read or written there.
    let elsewhere = base.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let state = base.join("state2");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::symlink(&elsewhere, state.join("profiles")).unwrap();
    let err = refused_start(&[
        "--log".as_ref(),
        log.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--run-dir".as_ref(),
        base.join("run").as_os_str(),
    ]);
    assert!(
        err.contains(&format!(
            "refusing the profiles directory '{}/profiles'",
            state.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// root's clients do not talk to a socket in a directory another user controls.
#[test]
fn root_clients_refuse_a_socket_that_is_not_roots() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("run");
    std::fs::create_dir(&hostile).unwrap();
    nix::unistd::chown(&hostile, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let sock = hostile.join("control.sock");
    // The fake server: its socket is handed to the user who owns the directory, as if that
    // user had bound it; it answers whatever it is asked with a reply of its own.
    let fake = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &sock,
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    fake.set_nonblocking(true).unwrap();
    let out = ebpfh()
        .args(["--run-dir"])
        .arg(&hostile)
        .arg("save")
        .output()
        .unwrap();
    let still_waiting = fake.accept().is_err();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "the fake reply was printed");
    assert_eq!(
        err.trim(),
        format!(
            "ebpfh: refusing to talk to the directory '{}': it belongs to uid 65534, not root, so it is not an ebpfh monitor's; check who controls that directory",
            hostile.display()
        )
    );
    assert!(still_waiting, "the client connected to the fake server");
}

/// A FIFO as --log is refused before the socket exists, so nothing is left behind.
#[test]
fn root_a_fifo_as_the_log_is_refused_at_start() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let run_dir = dir.path().join("run");
    let err = refused_start(&[
        "--log".as_ref(),
        fifo.as_os_str(),
        "--state-dir".as_ref(),
        dir.path().join("state").as_os_str(),
        "--run-dir".as_ref(),
        run_dir.as_os_str(),
    ]);
    assert_eq!(
        err.trim(),
        format!(
            "ebpfh: cannot open the event log '{}': it is a FIFO, not a regular file; --log takes a regular file or '-' (standard output)",
            fifo.display()
        )
    );
    assert!(!run_dir.join("control.sock").exists());
    assert!(!run_dir.join("ebpfh.pid").exists());
}

/// A log deleted or moved without a SIGHUP is noticed once, and the path gets a new file.
#[test]
fn root_a_deleted_or_moved_log_is_noticed_and_reopened() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);
    let wait_stderr = |m: &Monitor, what: &str| {
        let end = Instant::now() + Duration::from_secs(20);
        while !m.stderr_text().contains(what) {
            assert!(
                Instant::now() < end,
                "never said '{what}':\n{}",
                m.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    std::fs::remove_file(&mon.log).unwrap();
    wait_stderr(&mon, "was deleted without a SIGHUP");
    new_profiles(dir.path(), "after-delete", 1);
    assert!(mon
        .wait_for("profile_created", |_| true, CREATED_WAIT)
        .is_some());

    std::fs::rename(&mon.log, dir.path().join("events.jsonl.1")).unwrap();
    wait_stderr(&mon, "was moved away without a SIGHUP");
    new_profiles(dir.path(), "after-move", 1);
    assert!(mon
        .wait_for("profile_created", |_| true, CREATED_WAIT)
        .is_some());
    std::thread::sleep(Duration::from_millis(1500));
    mon.stop();
    let text = mon.stderr_text();
    assert_eq!(text.matches("without a SIGHUP").count(), 2, "{text}");
}

/// A reader of the event stream on standard output that goes away is reported, once.
#[test]
fn root_a_log_reader_that_goes_away_is_reported_once() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr");
    // Close-on-exec, or the monitor would inherit the read end and never see EPIPE.
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut child = ebpfh()
        .args(["--headless", "--log", "-", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(reader)),
        &mut first,
    )
    .unwrap();
    assert!(first.contains("monitor_started"), "{first}");
    // The reader is closed now: the next lines get EPIPE.
    for round in 0..3 {
        new_profiles(dir.path(), &format!("r{round}-"), 2);
        std::thread::sleep(Duration::from_millis(500));
    }
    let end = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&stderr_path).unwrap();
        if text.contains("Broken pipe") || Instant::now() > end {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        text.matches("cannot write to the event log 'stdout'")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("Broken pipe"), "{text}");
}

/// Out of file descriptors (64, fewer than the idle connections the monitor keeps) with hundreds
/// of idle connections, the monitor neither spins nor
/// floods its stderr, holds no thread per idle connection, and still answers `ebpfh status`.
#[test]
fn root_idle_connections_and_no_file_descriptors_leave_status_answering() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);
    let pid = std::fs::read_to_string(mon.run_dir.join("ebpfh.pid")).unwrap();
    let pid = pid.trim();
    let st = Command::new("prlimit")
        .args(["--pid", pid, "--nofile=64:64"])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(st.success());
    let sock = mon.run_dir.join("control.sock");
    let idle: Vec<std::os::unix::net::UnixStream> = (0..400)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let threads = |pid: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = text.lines().find(|l| l.starts_with("Threads:")).unwrap();
        line[8..].trim().parse().unwrap()
    };
    let during = threads(pid);
    let out = mon.client(&["status"]);
    assert!(
        out.status.success(),
        "status did not answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("monitoring   on"));
    drop(idle);
    let stderr = mon.stderr_text();
    assert!(stderr.len() < 16 << 10, "{} bytes of stderr", stderr.len());
    // The limit was reached, and said so once.
    assert_eq!(stderr.matches("Too many open files").count(), 1, "{stderr}");
    assert!(during < 80, "{during} threads for 400 idle connections");
}
