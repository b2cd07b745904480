//! Root end-to-end tests of `ebpfh top`: the real binary in a real terminal (tmux), driven with
//! keys while a workload runs, checked through the screen and through the client subcommands.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A tmux server of its own (`-L`), so parallel tests and the user's tmux never meet.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `cmd` in a detached 200x50 session.
    fn start(name: &str, cmd: &[&str]) -> Tmux {
        let t = Tmux {
            socket: format!("ebpfh-test-{}-{name}", std::process::id()),
        };
        let out = t.tmux(
            &[
                &["new-session", "-d", "-x", "200", "-y", "50", "-s", "t"][..],
                cmd,
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "tmux did not start (is it installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// Types keys (tmux key names, e.g. `Enter`, `Tab`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        self.tmux(&args);
    }

    /// Esc alone: a terminal reads Esc followed at once by another key as Alt+key.
    fn escape(&self) {
        self.keys(&["Escape"]);
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Types text literally.
    fn text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Waits until the screen satisfies `pred`; panics with the screen otherwise.
    #[track_caller]
    fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + limit;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!("the screen never showed {what}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", "t"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn ebpfh() -> &'static str {
    env!("CARGO_BIN_EXE_ebpfh")
}

fn profiles_json(run_dir: &Path) -> Value {
    let out = Command::new(ebpfh())
        .args(["profiles", "--json", "--run-dir"])
        .arg(run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn state_of(run_dir: &Path, key: &str) -> Option<String> {
    profiles_json(run_dir)
        .as_array()?
        .iter()
        .find(|p| p["profile"] == key)
        .and_then(|p| p["state"].as_str().map(String::from))
}

/// A long-lived process with a recognisable executable name (a copy of sleep).
fn sleeper(dir: &Path) -> (PathBuf, std::process::Child) {
    let path = dir.join("ebpfh-e2e-sleeper");
    std::fs::copy("/bin/sleep", &path).unwrap();
    let child = Command::new(&path).arg("120").spawn().unwrap();
    (path, child)
}

/// `sudo ebpfh top` on a machine without a monitor: it hosts one, shows the workload, and its
/// `n` key (confirmed) normalizes the workload's profile.
#[test]
fn root_top_hosts_a_monitor_and_normalizes_the_workload() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    let run_dir = dir.path().join("run");
    let state = dir.path().join("state");
    let log = dir.path().join("events.jsonl");
    let (sleeper_path, mut sleeper) = sleeper(dir.path());
    let cmd = [
        ebpfh(),
        "top",
        "--normal-wait",
        "1h",
        "--state-dir",
        state.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ];
    let tmux = Tmux::start("host", &cmd);
    tmux.wait_for("the in-process monitor", Duration::from_secs(60), |s| {
        s.contains("in-process monitor") && s.contains("monitoring on")
    });

    for _ in 0..10 {
        run(&prog, &[]);
    }
    // Filter to the workload (by its unique path: other programs may be called anomaly), then look at it in both views.
    tmux.text("/");
    tmux.text(prog.to_str().unwrap());
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the workload's profile", Duration::from_secs(15), |s| {
        s.contains(prog.to_str().unwrap()) && s.contains("Profiles 1/")
    });
    assert!(
        screen.contains("training") || screen.contains("frozen"),
        "{screen}"
    );

    // A new filter replaces the old one (no Esc: a busy terminal may read Esc+key as Alt+key).
    tmux.keys(&["Tab", "/"]);
    tmux.text(sleeper_path.to_str().unwrap());
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the sleeper process", Duration::from_secs(15), |s| {
        // Until the whole path is typed, the filter may match more (the test binary shares
        // the sleeper's directory prefix).
        s.contains(&sleeper.id().to_string())
            && s.contains(sleeper_path.to_str().unwrap())
            && s.contains("Processes 1/")
    });
    assert!(screen.contains("Processes 1/"), "{screen}");

    // Back to the profile; its detail shows the learned pairs by name.
    // A new filter replaces the old one (no Esc: a busy terminal may read Esc+key as Alt+key).
    tmux.keys(&["Tab", "/"]);
    tmux.text(prog.to_str().unwrap());
    tmux.keys(&["Enter"]);
    tmux.wait_for("the filtered profile", Duration::from_secs(10), |s| {
        s.contains("Profiles 1/")
    });
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the detail view", Duration::from_secs(10), |s| {
        s.contains("training pairs:") && s.contains(&format!("key {key}"))
    });
    assert!(screen.contains("write"), "{screen}");

    // n asks first; y runs it.
    assert_ne!(state_of(&run_dir, &key).as_deref(), Some("normal"));
    tmux.keys(&["n"]);
    let screen = tmux.wait_for("the confirmation", Duration::from_secs(5), |s| {
        s.contains("Normalize ")
    });
    assert!(screen.contains(prog.to_str().unwrap()), "{screen}");
    tmux.keys(&["y"]);
    tmux.wait_for("the command's result", Duration::from_secs(10), |s| {
        s.contains("normalized ") && s.contains("now normal")
    });
    assert_eq!(state_of(&run_dir, &key).as_deref(), Some("normal"));

    // The backdoor now shows in the feed, with its call's name.
    run(&prog, &[BACKDOOR]);
    tmux.wait_for("the anomaly in the feed", Duration::from_secs(15), |s| {
        s.lines()
            .any(|l| l.contains("anomaly") && l.contains("write"))
    });

    // q quits, restores the terminal, and the hosted monitor saves and removes its socket.
    tmux.keys(&["q"]);
    let end = Instant::now() + Duration::from_secs(30);
    while run_dir.join("control.sock").exists() {
        assert!(Instant::now() < end, "top did not stop:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let events = std::fs::read_to_string(&log).unwrap();
    let cmd_line = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "command")
        .expect("the key press was logged as a command event");
    assert_eq!(cmd_line["command"], "normalize");
    assert_eq!(cmd_line["profile"], key);
    assert_eq!(cmd_line["result"], "ok");
    assert!(
        events.contains("\"event\":\"monitor_stopped\""),
        "the hosted monitor stopped cleanly"
    );
    assert!(std::fs::read_dir(state.join("profiles")).unwrap().count() > 0);
    let _ = tmux.alive();
}

/// With a monitor running, top is its client: it names the monitor and leaves it running.
#[test]
fn root_top_is_a_client_of_a_running_monitor() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut mon = Monitor::start(dir.path(), &dir.path().join("state"), &[]);
    let pid = std::fs::read_to_string(mon.run_dir.join("ebpfh.pid")).unwrap();
    let tmux = Tmux::start(
        "client",
        &[ebpfh(), "top", "--run-dir", mon.run_dir.to_str().unwrap()],
    );
    let screen = tmux.wait_for("the monitor's numbers", Duration::from_secs(30), |s| {
        s.contains(&format!("monitor pid {}", pid.trim())) && s.contains("calls/s")
    });
    assert!(screen.contains("Profiles "), "{screen}");
    tmux.keys(&["?"]);
    tmux.wait_for("the help", Duration::from_secs(5), |s| {
        s.contains("this help")
    });
    tmux.escape();
    tmux.keys(&["q"]);
    let end = Instant::now() + Duration::from_secs(10);
    while tmux.screen().contains("Profiles ") {
        assert!(Instant::now() < end, "top did not quit:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        mon.run_dir.join("control.sock").exists(),
        "quitting a client top leaves the monitor running"
    );
    let status = mon.client_json(&["status"]);
    assert_eq!(status["monitoring"], true);
    mon.stop();
}

/// Closing the terminal (SIGHUP, then EOF on the tty) stops a hosted monitor cleanly: it saves,
/// logs monitor_stopped and removes its socket, and nothing is left spinning.
#[test]
fn root_top_stops_cleanly_when_its_terminal_goes_away() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let log = dir.path().join("events.jsonl");
    let state = dir.path().join("state");
    let tmux = Tmux::start(
        "hangup",
        &[
            ebpfh(),
            "top",
            "--state-dir",
            state.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    tmux.wait_for("the dashboard", Duration::from_secs(60), |s| {
        s.contains("monitoring on")
    });
    drop(tmux);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"event\":\"monitor_stopped\"") && !run_dir.join("control.sock").exists()
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "top did not stop after its terminal went away; log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
