//! Shared helpers for the root integration tests: a real monitor process, real programs, real BPF.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;

/// Fails (never skips) when not root: CI runs these as root and must notice if it does not.
#[track_caller]
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the BPF integration tests load a real kernel program and need root: run `sudo make test`"
    );
}

/// Compiles `tests/fixtures/<name>.c` into `dir` and returns the binary's path.
#[track_caller]
pub fn build_fixture(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc runs");
    assert!(status.success(), "compiling {} failed", src.display());
    out
}

/// `stat -c %d:%i` of a file: what ebpfh must print as its profile key.
pub fn stat_key(path: &Path) -> String {
    let m = fs::metadata(path).unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

/// Runs a program to completion with output discarded; returns its pid.
#[track_caller]
pub fn run(path: &Path, args: &[&str]) -> u32 {
    let mut child = Command::new(path)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let pid = child.id();
    assert!(
        child.wait().unwrap().success(),
        "{} {args:?} failed",
        path.display()
    );
    pid
}

pub struct Monitor {
    child: Option<Child>,
    pub log: PathBuf,
    pub stderr: PathBuf,
    pub state_dir: PathBuf,
    /// The monitor's own run directory (control socket, pid file), so tests run in parallel.
    pub run_dir: PathBuf,
}

pub const NORMAL_WAIT: &str = "2s";
/// How long a test waits for a `profile_created` line: the monitor holds it until the
/// executable's digest is known, up to its 10 s line wait, and the hashing thread may be busy
/// with bigger files first (as on an emulated CPU).
pub const CREATED_WAIT: Duration = Duration::from_secs(30);

/// The argument that makes `tests/fixtures/anomaly.c` run its backdoor: the 16 calls of
/// tests/fixtures/mix.h, so its LFC and its calls that teach a new pair both go above the
/// tolerize limit (12), and the incident is an alarm (src/incident.rs). A handful of writes would
/// be quiet novelty, and any number of identical writes a quiet repeat.
pub const BACKDOOR: &str = "attack";

/// The calls of tests/fixtures/mix.h's burst (`burst mix N`), and how many of them are writes.
pub const MIX_CALLS: u64 = 16;
pub const MIX_WRITES: u64 = 8;

impl Monitor {
    /// Starts `ebpfh --headless` on `state_dir`, logging to `dir/events.jsonl`, and waits until
    /// it reports that it monitors.
    #[track_caller]
    pub fn start(dir: &Path, state_dir: &Path, extra: &[&str]) -> Monitor {
        Monitor::start_waiting(dir, state_dir, NORMAL_WAIT, extra)
    }

    /// [`Monitor::start`] with another `--normal-wait` (every duration of the lifecycle).
    #[track_caller]
    pub fn start_waiting(dir: &Path, state_dir: &Path, wait: &str, extra: &[&str]) -> Monitor {
        let log = dir.join("events.jsonl");
        let stderr = dir.join("monitor.stderr");
        let run_dir = dir.join("run");
        let child = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
            .args(["--headless", "--normal-wait", wait, "--log"])
            .arg(&log)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--run-dir")
            .arg(&run_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("the ebpfh binary starts");
        let mut m = Monitor {
            child: Some(child),
            log,
            stderr,
            state_dir: state_dir.to_path_buf(),
            run_dir,
        };
        let started = m.wait_for("monitor_started", |_| true, Duration::from_secs(60));
        assert!(
            started.is_some(),
            "the monitor did not start; its stderr:\n{}",
            m.stderr_text()
        );
        // The socket answers once the loop runs; the executables found at start-up are hashed
        // off the loop (src/hasher.rs), so one answer means the loop is free.
        m.client_json(&["status"]);
        m
    }

    /// The monitor's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("monitor running").id()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Every JSON line written so far (each must parse).
    #[track_caller]
    pub fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        // Only whole lines: the monitor may be in the middle of writing the last one.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// Polls the log until an event of `kind` satisfies `pred`, or `limit` passes.
    pub fn wait_for(
        &mut self,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
        limit: Duration,
    ) -> Option<Value> {
        let end = Instant::now() + limit;
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e["event"] == kind && pred(e))
            {
                return Some(e);
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "the monitor exited ({status}) early; its stderr:\n{}",
                        self.stderr_text()
                    );
                }
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `ebpfh ARGS --run-dir RUN_DIR` (a client subcommand) and returns its output.
    pub fn client(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ebpfh"))
            .args(args)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .output()
            .expect("the ebpfh binary runs")
    }

    /// Like [`Monitor::client`] with `--json`, requiring success; returns the parsed output.
    #[track_caller]
    pub fn client_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.client(&all);
        assert!(
            out.status.success(),
            "ebpfh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ebpfh {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// SIGINT, then waits for a clean exit.
    #[track_caller]
    pub fn stop(&mut self) -> Output {
        self.stop_with(Signal::SIGINT)
    }

    pub fn signal(&self, sig: Signal) {
        let child = self.child.as_ref().expect("monitor running");
        nix::sys::signal::kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    }

    /// Sends `sig`, then waits for a clean exit.
    #[track_caller]
    pub fn stop_with(&mut self, sig: Signal) -> Output {
        self.signal(sig);
        let child = self.child.take().expect("monitor running");
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the monitor failed to stop cleanly; stderr:\n{}",
            self.stderr_text()
        );
        out
    }

    /// Runs `prog` until its profile is normal: enough clean runs to freeze, the normal wait,
    /// then runs until a `normal_started` event names its profile.
    #[track_caller]
    pub fn train_to_normal(&mut self, prog: &Path, args: &[&str]) -> Value {
        let key = stat_key(prog);
        for _ in 0..20 {
            run(prog, args);
        }
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            run(prog, args);
            if let Some(e) = self.wait_for(
                "normal_started",
                |e| e["profile"] == key,
                Duration::from_millis(250),
            ) {
                return e;
            }
        }
        panic!(
            "{} never became normal; events:\n{:#?}",
            prog.display(),
            self.events()
        );
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Anomaly events whose pid is one of `pids`.
pub fn anomalies_of(events: &[Value], pids: &[u32]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["event"] == "anomaly" && pids.iter().any(|&p| e["pid"] == p))
        .cloned()
        .collect()
}
