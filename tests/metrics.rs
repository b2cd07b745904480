//! `--metrics-addr` end to end: a real Prometheus server (Debian's `prometheus` package) scrapes
//! a real monitor, its HTTP API returns the values, and `promtool check metrics` accepts the
//! text. Root: the monitor loads the BPF program.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `GET path` on 127.0.0.1:port over plain HTTP/1.0; the status code and the body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ebpfh\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus runs (apt-get install prometheus)");
        Prometheus { child, port, log }
    }

    /// The value of `query`'s first sample, once Prometheus has one that satisfies `ok`.
    #[track_caller]
    fn wait_for(&self, query: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let end = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < end {
            if let Ok((200, body)) = get(self.port, &format!("/api/v1/query?query={query}")) {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["status"], "success", "{body}");
                if let Some(s) = v["data"]["result"][0]["value"][1].as_str() {
                    let x: f64 = s.parse().unwrap();
                    if ok(x) {
                        return x;
                    }
                }
                last = body;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "Prometheus never had a fitting {query}; last answer {last}; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port the monitor says it serves metrics on.
fn metrics_port(m: &Monitor) -> u16 {
    let err = m.stderr_text();
    let line = err
        .lines()
        .find(|l| l.contains("serving Prometheus metrics on http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no metrics line in:\n{err}"));
    let rest = line.split("http://127.0.0.1:").nth(1).unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// The value of an unlabelled (or the first labelled) sample `name` in exposition text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn root_prometheus_scrapes_real_values_that_promtool_accepts() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let state = dir.path().join("state");
    let mut mon = Monitor::start(dir.path(), &state, &["--metrics-addr", "127.0.0.1:0"]);
    let port = metrics_port(&mon);

    let (code, text) = get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "ebpfh_build_info",
        "ebpfh_syscalls_total",
        "ebpfh_anomalies_total",
        "ebpfh_incidents_total",
        "ebpfh_quiet_incidents_total",
        "ebpfh_events_lost_total",
        "ebpfh_profiles",
        "ebpfh_traced_tasks",
        "ebpfh_map_entries",
        "ebpfh_map_capacity",
        "ebpfh_profile_saves_total",
        "ebpfh_responses_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help:\n{text}"
        );
    }
    assert!(
        text.contains(r#"ebpfh_map_capacity{map="profiles"} 4095"#),
        "{text}"
    );
    assert_eq!(get(port, "/").unwrap().0, 404);

    let prom = Prometheus::start(dir.path(), port);
    prom.wait_for("up", |v| v == 1.0);
    let before = prom.wait_for("ebpfh_syscalls_total", |v| v > 0.0);
    // Real work for the kernel program, then the same series must have grown.
    mon.train_to_normal(&prog, &[]);
    let after = prom.wait_for("ebpfh_syscalls_total", |v| v > before);
    assert!(after > before);
    prom.wait_for(r#"ebpfh_profiles{state="normal"}"#, |v| v >= 1.0);
    // Prometheus reads the tasks the kernel traces: at least this test and the monitor.
    prom.wait_for("ebpfh_traced_tasks", |v| v >= 2.0);
    run(&prog, &[BACKDOOR]);
    mon.wait_for(
        "anomaly",
        |e| e["exe"] == prog.to_str().unwrap(),
        Duration::from_secs(10),
    )
    .expect("the backdoor run is anomalous");
    prom.wait_for("ebpfh_anomalies_total", |v| v >= 1.0);
    prom.wait_for("ebpfh_build_info", |v| v == 1.0);

    // A save asked for now is counted by the time it is answered.
    let saved = mon.client_json(&["save"]);
    let (_, text) = get(port, "/metrics").unwrap();
    let saves = sample(&text, "ebpfh_profile_saves_total").unwrap();
    assert!(saves >= 1.0, "after {saved}: {text}");
    mon.stop();
}

#[test]
fn root_a_busy_metrics_address_is_one_sentence_at_start() {
    require_root();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args([
            "--headless",
            "--log",
            "-",
            "--metrics-addr",
            &addr,
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!("ebpfh: cannot serve metrics on {addr}: Address already in use (os error 98); give metrics_addr a free address such as 127.0.0.1:9464")
    );
    assert!(
        out.stdout.is_empty(),
        "nothing started: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
