//! Prometheus metrics on `--metrics-addr`: what the monitor already knows, as counters and
//! gauges that a small HTTP thread serves on `/metrics` in the text exposition format.
//!
//! The monitor thread updates the metrics (atomics) as it handles events and once a second
//! from the kernel's own counters; the HTTP thread only encodes them, so a scrape never waits
//! for the monitor and the monitor never waits for a scrape. Labels are small fixed sets
//! (event kinds, profile states, map names, program names): never a process or a path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};
use prometheus::{
    CounterVec, Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::bpf::{Kernel, Stats};
use crate::event::KIND_NAMES;
use crate::jsonl::Record;
use crate::profile::State;

/// Where `kernel.bpf_stats_enabled` is read: the kernel counts program run time only while on.
const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Every metric ebpfh exports, and what the monitor remembers to turn the kernel's running
/// totals into increments.
pub struct Metrics {
    registry: Registry,
    syscalls: IntCounter,
    anomalies: IntCounter,
    incidents: IntCounter,
    quiet_incidents: IntCounter,
    events_lost: IntCounterVec,
    insert_failures: IntCounterVec,
    profiles: IntGaugeVec,
    tasks: IntGauge,
    map_entries: IntGaugeVec,
    map_capacity: IntGaugeVec,
    saves: IntCounter,
    save_failures: IntCounter,
    responses: IntCounterVec,
    log_write_failures: IntCounter,
    bpf_run: CounterVec,
    bpf_runs: IntCounterVec,
    /// Each slot's call count at the last tick (a reset sets it back to 0).
    counts: Vec<u64>,
    stats: Stats,
    /// Each program's (run time ns, run count) at the last tick.
    programs: std::collections::HashMap<String, (u64, u64)>,
    log_failed: u64,
}

/// Registers a metric made from `opts`; the names are fixed here, so this cannot fail.
fn reg<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone()))
        .expect("metric names are unique and valid");
    m
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(
        r,
        IntCounter::with_opts(Opts::new(name, help)).expect("valid metric"),
    )
}

fn counters(r: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
    )
}

fn gauges(r: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
    )
}

impl Metrics {
    /// The metrics, with `kernel`'s current profile counts as the starting point: calls made
    /// before this monitor started (kept in the loaded profiles) are not counted again.
    pub fn new(kernel: &Kernel<'_>) -> Metrics {
        let r = Registry::new_custom(Some("ebpfh".into()), None).expect("a valid prefix");
        gauges(
            &r,
            "build_info",
            "The running ebpfh's version (always 1).",
            "version",
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let m = Metrics {
            syscalls: counter(
                &r,
                "syscalls_total",
                "System calls of traced tasks the kernel program processed since the monitor started.",
            ),
            anomalies: counter(
                &r,
                "anomalies_total",
                "Anomalous system calls the monitor received, with or without an anomaly line of their own.",
            ),
            incidents: counter(
                &r,
                "incidents_total",
                "Incidents (bursts of anomalies in one task) that ended as alarms.",
            ),
            quiet_incidents: counter(
                &r,
                "quiet_incidents_total",
                "Incidents that ended without being alarms (small or repeated novelty), written or not.",
            ),
            events_lost: counters(
                &r,
                "events_lost_total",
                "Events the kernel could not queue because the ring buffer was full, by kind.",
                "kind",
            ),
            insert_failures: counters(
                &r,
                "kernel_insert_failures_total",
                "Kernel map inserts that failed (rows_full: pairs not learned; profiles_full: exec left untraced; tasks_failed).",
                "what",
            ),
            profiles: gauges(&r, "profiles", "Profiles in the kernel, by state.", "state"),
            tasks: reg(
                &r,
                IntGauge::new("traced_tasks", "Tasks (threads) the kernel program traces.")
                    .expect("valid metric"),
            ),
            map_entries: gauges(
                &r,
                "map_entries",
                "Entries in use in the kernel's profile table and lookahead row pool.",
                "map",
            ),
            map_capacity: gauges(
                &r,
                "map_capacity",
                "Entries the kernel's profile table and lookahead row pool can hold.",
                "map",
            ),
            saves: counter(
                &r,
                "profile_saves_total",
                "Profiles written to the state directory.",
            ),
            save_failures: counter(
                &r,
                "profile_save_failures_total",
                "Profiles that could not be written to the state directory.",
            ),
            responses: counters(
                &r,
                "responses_total",
                "Responses taken: delay (a task stopped), execve_denied, execve_killed.",
                "response",
            ),
            log_write_failures: counter(
                &r,
                "event_log_write_failures_total",
                "JSON lines that could not be written to the event log.",
            ),
            bpf_run: reg(
                &r,
                CounterVec::new(
                    Opts::new(
                        "bpf_program_run_seconds_total",
                        "Time the kernel spent in each ebpfh program while kernel.bpf_stats_enabled was 1.",
                    ),
                    &["program"],
                )
                .expect("valid metric"),
            ),
            bpf_runs: counters(
                &r,
                "bpf_program_runs_total",
                "Runs of each ebpfh program while kernel.bpf_stats_enabled was 1.",
                "program",
            ),
            registry: r,
            counts: Vec::new(),
            stats: kernel.stats(),
            programs: Default::default(),
            log_failed: 0,
        };
        // Every kind and state is exported from the start, 0 until something happens.
        for kind in KIND_NAMES.iter().skip(1) {
            m.events_lost.with_label_values(&[kind]).inc_by(0);
        }
        for what in ["rows_full", "profiles_full", "tasks_failed"] {
            m.insert_failures.with_label_values(&[what]).inc_by(0);
        }
        for state in [State::Training, State::Frozen, State::Normal] {
            m.profiles.with_label_values(&[state.as_str()]).set(0);
        }
        for response in ["delay", "execve_denied", "execve_killed"] {
            m.responses.with_label_values(&[response]).inc_by(0);
        }
        let cap = kernel.capacity();
        // Slot 0 and row 0 are never used ("none"), so the tables hold one less.
        m.map_capacity
            .with_label_values(&["profiles"])
            .set(i64::from(cap.slots()));
        m.map_capacity
            .with_label_values(&["rows"])
            .set(i64::from(cap.rows.saturating_sub(1)));
        let mut m = m;
        m.counts = std::iter::once(0)
            .chain(
                kernel
                    .slots()
                    .map(|slot| kernel.profile_counters(slot).map_or(0, |p| p.count)),
            )
            .collect();
        // Every gauge has its value before the first scrape (the counters start from here).
        m.tick(kernel, 0);
        m
    }

    /// One anomalous call, whether or not its `anomaly` line is written.
    pub fn anomaly(&self) {
        self.anomalies.inc();
    }

    /// Counts what a line reports (called for every line the monitor emits).
    pub fn record(&self, rec: &Record) {
        match rec {
            Record::Incident { alarm: true, .. } => self.incidents.inc(),
            Record::Incident { alarm: false, .. } => self.quiet_incidents.inc(),
            Record::Delay { .. } => self.responses.with_label_values(&["delay"]).inc(),
            Record::ExecveDenied { killed, .. } => {
                let what = if *killed {
                    "execve_killed"
                } else {
                    "execve_denied"
                };
                self.responses.with_label_values(&[what]).inc();
            }
            _ => {}
        }
    }

    /// Counts one round of saving profiles.
    pub fn saved(&self, saved: usize, failed: usize) {
        self.saves.inc_by(saved as u64);
        self.save_failures.inc_by(failed as u64);
    }

    /// Brings the kernel-side metrics up to date; the monitor calls it once a second. `log_failed`
    /// is the event log's running count of lines it could not write.
    pub fn tick(&mut self, kernel: &Kernel<'_>, log_failed: u64) {
        let st = kernel.stats();
        let before = std::mem::replace(&mut self.stats, st);
        for (i, kind) in KIND_NAMES.iter().enumerate().skip(1) {
            let d = st.events_lost[i].saturating_sub(before.events_lost[i]);
            self.events_lost.with_label_values(&[kind]).inc_by(d);
        }
        for (what, now, was) in [
            ("rows_full", st.rows_full, before.rows_full),
            ("profiles_full", st.profiles_full, before.profiles_full),
            ("tasks_failed", st.tasks_failed, before.tasks_failed),
        ] {
            self.insert_failures
                .with_label_values(&[what])
                .inc_by(now.saturating_sub(was));
        }
        // The sink's count restarts from 0 once the log is writable again.
        self.log_write_failures
            .inc_by(log_failed.saturating_sub(self.log_failed));
        self.log_failed = log_failed;

        let mut states = [0i64; 3];
        let slots = kernel.slots();
        self.counts.resize(slots.end as usize, 0);
        let mut calls = 0u64;
        for slot in slots {
            let Some(p) = kernel.profile_counters(slot) else {
                continue;
            };
            let last = &mut self.counts[slot as usize];
            // A reset sets the counter back to 0: count what came after it.
            calls += p.count.checked_sub(*last).unwrap_or(p.count);
            *last = p.count;
            states[p.state() as usize] += 1;
        }
        self.syscalls.inc_by(calls);
        for (state, n) in [State::Training, State::Frozen, State::Normal]
            .into_iter()
            .zip(states)
        {
            self.profiles.with_label_values(&[state.as_str()]).set(n);
        }
        self.map_entries
            .with_label_values(&["profiles"])
            .set(i64::from(st.profiles_used));
        self.map_entries
            .with_label_values(&["rows"])
            .set(i64::from(st.rows_used));
        match kernel.tasks() {
            Ok(tasks) => self.tasks.set(tasks.len() as i64),
            Err(e) => log::debug!("cannot count the traced tasks for the metrics: {e}"),
        }

        let enabled = std::fs::read_to_string(BPF_STATS_SYSCTL).is_ok_and(|s| s.trim() == "1");
        if enabled {
            for (name, run_ns, runs) in kernel.program_stats() {
                let (was_ns, was_runs) = self
                    .programs
                    .insert(name.clone(), (run_ns, runs))
                    .unwrap_or_default();
                self.bpf_run
                    .with_label_values(&[&name])
                    .inc_by(run_ns.saturating_sub(was_ns) as f64 / 1e9);
                self.bpf_runs
                    .with_label_values(&[&name])
                    .inc_by(runs.saturating_sub(was_runs));
            }
        } else {
            // Counting is off: what the kernel reports once it is on again starts from there.
            self.programs.clear();
        }
    }
}

/// The metrics of `registry` in Prometheus' text format.
fn text(registry: &Registry) -> (String, String) {
    let encoder = TextEncoder::new();
    let mut out = Vec::new();
    encoder
        .encode(&registry.gather(), &mut out)
        .expect("the metrics encode");
    (
        String::from_utf8_lossy(&out).into_owned(),
        encoder.format_type().to_string(),
    )
}

/// The HTTP server and its thread; dropping it stops the thread.
pub struct Exporter {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Exporter {
    /// Binds `addr` now, before anything else starts, so a bad or busy address fails at once.
    pub fn bind(addr: SocketAddr) -> Result<Exporter> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            anyhow!("cannot serve metrics on {addr}: {e}; give metrics_addr a free address such as 127.0.0.1:9464")
        })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("the metrics server is not on an IP address"))?;
        Ok(Exporter {
            server: Arc::new(server),
            thread: None,
            addr: bound,
        })
    }

    /// Starts answering scrapes with `metrics`.
    pub fn serve(&mut self, metrics: &Metrics) -> Result<()> {
        let registry = metrics.registry.clone();
        let s = self.server.clone();
        self.thread = Some(
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || serve(&s, &registry))?,
        );
        log::info!("serving Prometheus metrics on http://{}/metrics", self.addr);
        Ok(())
    }
}

fn serve(server: &tiny_http::Server, registry: &Registry) {
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or_default();
        let ok = matches!(
            req.method(),
            tiny_http::Method::Get | tiny_http::Method::Head
        );
        let resp = if ok && path == "/metrics" {
            let (body, content_type) = text(registry);
            let header = tiny_http::Header::from_bytes("Content-Type", content_type)
                .expect("a valid header");
            tiny_http::Response::from_string(body).with_header(header)
        } else if ok {
            tiny_http::Response::from_string("ebpfh serves its metrics on /metrics\n")
                .with_status_code(404)
        } else {
            tiny_http::Response::from_string("only GET /metrics\n").with_status_code(405)
        };
        // The scraper may have hung up; the next scrape is another request.
        let _ = req.respond(resp);
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `--metrics-addr`: an IP address and port.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("'{s}' is not an address and port; write it like 127.0.0.1:9464 or [::1]:9464")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_an_ip_and_a_port() {
        assert_eq!(
            parse_addr("127.0.0.1:9464"),
            Ok("127.0.0.1:9464".parse().unwrap())
        );
        assert!(parse_addr("[::1]:0").is_ok());
        let e = parse_addr("localhost").unwrap_err();
        assert!(
            e.contains("'localhost'") && e.contains("127.0.0.1:9464"),
            "{e}"
        );
    }
}
