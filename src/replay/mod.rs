//! `ebpfh replay`: feeds recorded or published traces through the pH model, offline.
//!
//! Two modes. *Evaluation* (`--train`, `--normal`, `--attack`) learns every lookahead pair of
//! the training traces, freezes that as the normal database, and scores each test trace alone
//! against it. *Online* (paths only) runs the full state machine in trace order and prints the
//! JSON lines the monitor would have written. The README's "Measuring detection" section is the
//! user-facing definition of both; keep them in step.

pub mod formats;
pub mod online;
pub mod plot;
pub mod score;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::model::{Event, Model, Settings};
use crate::profile::{Profile, ProfileKey, PS_NORMAL};
use crate::syscalls::Abi;
use crate::trace::Record;
pub use formats::Format;
use score::{TraceScore, METRICS, THRESHOLDS};

/// How long a profile stays frozen before it turns normal, in online mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Trace time (needs timed input).
    Time(Duration),
    /// Calls replayed since the start of the replay.
    Calls(u64),
}

/// Parses `--normal-wait`: a duration (`10m`, `7d`) or a number of calls (`5000calls`).
pub fn parse_wait(s: &str) -> Result<Wait, String> {
    if let Some(n) = s.strip_suffix("calls") {
        return n
            .trim()
            .parse()
            .map(Wait::Calls)
            .map_err(|_| format!("'{s}' is not a number of calls (e.g. 5000calls)"));
    }
    crate::settings::parse_duration(s)
        .map(Wait::Time)
        .map_err(|_| {
            format!(
                "'{s}' is neither a duration (e.g. 10m, 7d) nor a number of calls (e.g. 5000calls)"
            )
        })
}

/// Tunables of online mode; `None` keeps what an .ebt recording says, else pH's default.
#[derive(Clone, Debug, Default)]
pub struct Tunables {
    pub normal_wait: Option<Wait>,
    pub anomaly_limit: Option<u32>,
    pub tolerize_limit: Option<u32>,
    pub normal_factor: Option<u32>,
    pub normal_factor_den: Option<u32>,
    pub log_sequences: bool,
    pub lifecycle: Option<crate::settings::Lifecycle>,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Online mode: traces to replay in order.
    pub paths: Vec<PathBuf>,
    pub train: Vec<PathBuf>,
    pub normal: Vec<PathBuf>,
    pub attack: Vec<PathBuf>,
    /// `None`: detect each file's format.
    pub format: Option<Format>,
    pub abi: Abi,
    pub json: bool,
    pub csv: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub tunables: Tunables,
    /// The `host` of online JSON lines.
    pub host: String,
    /// Online: when bursts of anomalies become incidents, as in the monitor.
    pub incidents: crate::incident::Limits,
}

/// One input file and its layout.
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub format: Format,
    pub bytes: u64,
}

/// The files named by `paths`: files as given, directories walked recursively in path order
/// (names starting with '.' skipped), each with its format.
pub fn inputs(paths: &[PathBuf], format: Option<Format>) -> Result<Vec<Input>> {
    let mut files = Vec::new();
    for p in paths {
        let meta =
            std::fs::metadata(p).with_context(|| format!("cannot read '{}'", p.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    files
        .into_iter()
        .map(|path| {
            let format = match format {
                Some(f) => f,
                None => formats::detect(&path)?,
            };
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            Ok(Input {
                path,
                format,
                bytes,
            })
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read '{}'", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("cannot read '{}'", dir.display()))?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = e.path();
        let ty = e
            .file_type()
            .with_context(|| format!("cannot read '{}'", path.display()))?;
        if ty.is_dir() {
            walk(&path, out)?;
        } else if ty.is_file() || (ty.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

/// A progress bar over input bytes, drawn only when stderr is a terminal.
pub fn progress(inputs: &[Input]) -> ProgressBar {
    let total: u64 = inputs.iter().map(|i| i.bytes).sum();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    // Short inputs finish before a bar would help; a bar in a pipe or a log is noise.
    let long = inputs.len() > 50 || total > 8 << 20;
    if long && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    let style =
        ProgressStyle::with_template("{spinner} {msg:>8} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

/// Unknown strace names over all files, reported once at the end.
#[derive(Default)]
pub struct Unknown {
    names: BTreeMap<String, u64>,
}

impl Unknown {
    pub fn add(&mut self, info: &formats::TraceInfo) {
        for (n, c) in &info.unknown_names {
            *self.names.entry(n.clone()).or_insert(0) += c;
        }
    }

    pub fn report(&self, abi: Abi) {
        if self.names.is_empty() {
            return;
        }
        let calls: u64 = self.names.values().sum();
        let list: Vec<String> = self
            .names
            .iter()
            .map(|(n, c)| format!("'{n}' ({c})"))
            .collect();
        eprintln!(
            "ebpfh: {calls} calls had names the {abi:?} table lacks and were replayed as OTHER: {}",
            list.join(", ")
        );
    }
}

/// Runs `ebpfh replay`.
pub fn run(opts: &Options) -> Result<()> {
    if opts.train.is_empty() {
        if !opts.normal.is_empty() || !opts.attack.is_empty() {
            anyhow::bail!("--normal and --attack need training traces: add --train PATH");
        }
        if opts.paths.is_empty() {
            anyhow::bail!("nothing to replay: give trace files (online) or --train PATH with --normal/--attack PATH (evaluation)");
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        online::run(opts, &mut out)?;
        out.flush().context("cannot write to standard output")?;
        return Ok(());
    }
    if !opts.paths.is_empty() {
        anyhow::bail!("give trace paths either to --train/--normal/--attack (evaluation) or alone (online), not both");
    }
    let report = evaluate(opts)?;
    if let Some(path) = &opts.csv {
        write_csv(path, &report.scores)?;
    }
    if let Some(path) = &opts.plot {
        plot::roc_png(path, &report.scores)
            .with_context(|| format!("cannot draw '{}'", path.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let text = if opts.json {
        serde_json::to_string_pretty(&report.json())? + "\n"
    } else {
        report.text()
    };
    out.write_all(text.as_bytes())
        .context("cannot write to standard output")?;
    Ok(())
}

/// The model's settings in evaluation: profiles never turn normal by themselves (normal_wait
/// never ends) and never stop being normal (no anomaly limit), so the testing data is exactly
/// what `normalize` copied after training.
fn evaluation_settings() -> Settings {
    Settings {
        normal_wait_ns: u64::MAX,
        anomaly_limit: u32::MAX,
        // pH's: nothing a profile learns after normalize may reach its testing data.
        lifecycle: crate::model::Lifecycle::Ph,
        ..Settings::default()
    }
}

/// Drives the model with one record in evaluation: the trace's clock and recorded settings are
/// ignored (time stays 0, so nothing is promoted). Returns whether a call was processed.
fn feed_fixed(model: &mut Model, r: &Record, out: &mut Vec<Event>) -> bool {
    match *r {
        Record::Call { tid, nr, .. } => {
            if model.task(tid).is_none() {
                return false;
            }
            model.syscall_into(tid, i64::from(nr), 0, out);
            true
        }
        Record::Exec { tid, key, .. } | Record::Adopt { tid, key, .. } => {
            out.extend(model.exec(tid, key, 0));
            false
        }
        Record::Settings { .. } => false,
        _ => {
            crate::trace::feed(model, r, out);
            false
        }
    }
}

/// Ends every task still alive at `now`, so the next trace starts with none (its tids may
/// repeat); their runs end there, as if they exited when their trace did.
fn exit_all(model: &mut Model, now: u64, out: &mut Vec<Event>) {
    let mut tids: Vec<u32> = model.tasks().map(|(t, _)| t).collect();
    // In tid order, so a replay is the same on every run.
    tids.sort_unstable();
    for t in tids {
        model.exit_into(t, now, out);
    }
}

/// Makes `key` normal with an empty testing database: every call of it is then anomalous.
fn empty_normal(model: &mut Model, key: ProfileKey) {
    let mut p = model.profile(key).unwrap_or(Profile {
        key,
        ..Profile::default()
    });
    p.state = PS_NORMAL;
    p.test = crate::profile::Table::default();
    model.insert_profile(&p);
}

/// What evaluation produced.
pub struct Report {
    pub abi: Abi,
    pub train_traces: u64,
    pub train_calls: u64,
    /// (executable, key, pairs in the normal database), in creation order.
    pub profiles: Vec<(String, ProfileKey, u64)>,
    pub scores: Vec<TraceScore>,
    pub has_normal: bool,
    pub has_attack: bool,
}

/// Trains on `opts.train`, then scores each trace of `opts.normal` and `opts.attack`.
pub fn evaluate(opts: &Options) -> Result<Report> {
    let train = inputs(&opts.train, opts.format)?;
    let normal = inputs(&opts.normal, opts.format)?;
    let attack = inputs(&opts.attack, opts.format)?;
    let all: Vec<Input> = train
        .iter()
        .chain(&normal)
        .chain(&attack)
        .cloned()
        .collect();
    let bar = progress(&all);
    let mut unknown = Unknown::default();
    let mut model = Model::new(evaluation_settings());
    let mut events = Vec::new();
    let mut names: BTreeMap<ProfileKey, String> = BTreeMap::new();

    bar.set_message("training");
    let mut train_calls = 0u64;
    for input in &train {
        let info = formats::read(&input.path, input.format, opts.abi, &mut |r| {
            if let Record::Exe { key, path, script } = r {
                names
                    .entry(*key)
                    .or_insert_with(|| crate::control::print::with_script(path, script));
            }
            train_calls += u64::from(feed_fixed(&mut model, r, &mut events));
            events.clear();
        })?;
        unknown.add(&info);
        exit_all(&mut model, 0, &mut events);
        events.clear();
        bar.inc(input.bytes);
    }

    // The training data becomes the testing data, once; an executable that made no call has
    // an empty database like one never seen.
    let keys: Vec<ProfileKey> = model.keys().collect();
    let mut profiles = Vec::new();
    for key in keys {
        if model.normalize(key).is_err() {
            empty_normal(&mut model, key);
        }
        let pairs = model.profile(key).map_or(0, |p| p.test.pairs());
        let exe = names.get(&key).cloned().unwrap_or_else(|| key.to_string());
        profiles.push((exe, key, pairs));
    }

    let mut scores = Vec::new();
    for (set, inputs) in [("normal", &normal), ("attack", &attack)] {
        bar.set_message(set);
        for input in inputs.iter() {
            let (mut calls, mut anomalous, mut max_lfc) = (0u64, 0u64, 0u32);
            let info = formats::read(&input.path, input.format, opts.abi, &mut |r| {
                calls += u64::from(feed_fixed(&mut model, r, &mut events));
                for e in events.drain(..) {
                    match e {
                        Event::Anomaly { lfc, .. } => {
                            anomalous += 1;
                            max_lfc = max_lfc.max(lfc);
                        }
                        // An executable training never ran: test it against nothing.
                        Event::ProfileCreated { key, .. } => empty_normal(&mut model, key),
                        _ => {}
                    }
                }
            })?;
            unknown.add(&info);
            exit_all(&mut model, 0, &mut events);
            events.clear();
            scores.push(TraceScore::new(
                set,
                input.path.display().to_string(),
                calls,
                anomalous,
                max_lfc,
            ));
            bar.inc(input.bytes);
        }
    }
    bar.finish_and_clear();
    unknown.report(opts.abi);
    Ok(Report {
        abi: opts.abi,
        train_traces: train.len() as u64,
        train_calls,
        profiles,
        scores,
        has_normal: !normal.is_empty(),
        has_attack: !attack.is_empty(),
    })
}

fn write_csv(path: &Path, scores: &[TraceScore]) -> Result<()> {
    let mut s = String::from("set,path,calls,anomalous_calls,max_lfc,rate\n");
    for t in scores {
        // Paths are quoted as CSV requires (a doubled quote inside).
        s.push_str(&format!(
            "{},\"{}\",{},{},{},{}\n",
            t.set,
            t.path.replace('"', "\"\""),
            t.calls,
            t.anomalous_calls,
            t.max_lfc,
            t.rate
        ));
    }
    std::fs::write(path, s).with_context(|| format!("cannot write '{}'", path.display()))
}

/// Per-set totals.
struct SetSummary {
    traces: usize,
    calls: u64,
    anomalous_calls: u64,
    flagged: Vec<usize>,
}

impl Report {
    fn set(&self, name: &str) -> Vec<&TraceScore> {
        self.scores.iter().filter(|s| s.set == name).collect()
    }

    fn summary(&self, name: &str) -> SetSummary {
        let set = self.set(name);
        SetSummary {
            traces: set.len(),
            calls: set.iter().map(|s| s.calls).sum(),
            anomalous_calls: set.iter().map(|s| s.anomalous_calls).sum(),
            flagged: THRESHOLDS
                .iter()
                .map(|t| set.iter().filter(|s| t.flags(s)).count())
                .collect(),
        }
    }

    fn values(&self, name: &str, m: score::Metric) -> Vec<f64> {
        self.set(name).iter().map(|s| m.of(s)).collect()
    }

    /// Mann-Whitney AUC of each metric (normal vs attack).
    pub fn aucs(&self) -> Vec<(score::Metric, Option<f64>)> {
        METRICS
            .iter()
            .map(|&m| {
                (
                    m,
                    score::auc(&self.values("normal", m), &self.values("attack", m)),
                )
            })
            .collect()
    }

    fn rate(flagged: usize, traces: usize) -> Option<f64> {
        (traces > 0).then(|| flagged as f64 / traces as f64)
    }

    pub fn json(&self) -> serde_json::Value {
        let mut sets = serde_json::Map::new();
        for name in ["normal", "attack"] {
            let s = self.summary(name);
            let flagged: serde_json::Map<String, serde_json::Value> = THRESHOLDS
                .iter()
                .zip(&s.flagged)
                .map(|(t, n)| (t.key(), json!(n)))
                .collect();
            sets.insert(
                name.into(),
                json!({
                    "traces": s.traces,
                    "calls": s.calls,
                    "anomalous_calls": s.anomalous_calls,
                    "flagged": flagged,
                }),
            );
        }
        let (n, a) = (self.summary("normal"), self.summary("attack"));
        let rates = |sum: &SetSummary| -> serde_json::Map<String, serde_json::Value> {
            THRESHOLDS
                .iter()
                .zip(&sum.flagged)
                .map(|(t, &f)| (t.key(), json!(Self::rate(f, sum.traces))))
                .collect()
        };
        let aucs: serde_json::Map<String, serde_json::Value> = self
            .aucs()
            .into_iter()
            .map(|(m, v)| (m.key().to_string(), json!(v)))
            .collect();
        json!({
            "abi": format!("{:?}", self.abi).to_lowercase(),
            "training": {
                "traces": self.train_traces,
                "calls": self.train_calls,
                "profiles": self.profiles.iter().map(|(exe, key, pairs)| json!({
                    "exe": exe, "profile": key.to_string(), "pairs": pairs,
                })).collect::<Vec<_>>(),
            },
            "sets": sets,
            "detection_rate": rates(&a),
            "false_alarm_rate": rates(&n),
            "auc": aucs,
        })
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let pairs: u64 = self.profiles.iter().map(|p| p.2).sum();
        s += &format!(
            "trained on {} traces ({} calls): {} profile{}, {} lookahead pairs\n",
            self.train_traces,
            self.train_calls,
            self.profiles.len(),
            if self.profiles.len() == 1 { "" } else { "s" },
            pairs
        );
        for (exe, _, pairs) in &self.profiles {
            s += &format!("  {exe}: {pairs} pairs\n");
        }
        s += &format!(
            "\n{:<8} {:>7} {:>10} {:>10}",
            "set", "traces", "calls", "anomalous"
        );
        for t in THRESHOLDS {
            s += &format!(" {:>12}", t.label());
        }
        s += "\n";
        for name in ["normal", "attack"] {
            let sum = self.summary(name);
            s += &format!(
                "{:<8} {:>7} {:>10} {:>10}",
                name, sum.traces, sum.calls, sum.anomalous_calls
            );
            for f in &sum.flagged {
                s += &format!(" {:>12}", f);
            }
            s += "\n";
        }
        let (n, a) = (self.summary("normal"), self.summary("attack"));
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        s += "\ntraces flagged     detection rate   false-alarm rate\n";
        for (i, t) in THRESHOLDS.iter().enumerate() {
            s += &format!(
                "{:<16} {:>16} {:>18}\n",
                t.label(),
                pct(Self::rate(a.flagged[i], a.traces)),
                pct(Self::rate(n.flagged[i], n.traces))
            );
        }
        s += "\nROC AUC (normal vs attack)\n";
        for (m, v) in self.aucs() {
            s += &format!(
                "{:<16} {:>16}\n",
                m.key(),
                v.map_or("-".to_string(), |v| format!("{v:.4}"))
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_durations_or_calls() {
        assert_eq!(parse_wait("5000calls"), Ok(Wait::Calls(5000)));
        assert_eq!(parse_wait("10m"), Ok(Wait::Time(Duration::from_secs(600))));
        assert!(parse_wait("soon").unwrap_err().contains("5000calls"));
        assert!(parse_wait("xcalls").is_err());
    }

    fn adfa(dir: &Path, name: &str, calls: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, calls).unwrap();
        p
    }

    /// Testing never learns: the same trace scores the same before and after other traces.
    #[test]
    fn each_test_trace_scores_alone() {
        let dir = tempfile::tempdir().unwrap();
        let train = adfa(dir.path(), "train", "1 2 3 1 2 3 1 2 3");
        let odd = adfa(dir.path(), "odd", "1 2 3 4 4 4 1 2 3");
        let opts = Options {
            paths: vec![],
            train: vec![train.clone()],
            normal: vec![odd.clone(), odd.clone(), train],
            attack: vec![odd],
            format: None,
            abi: Abi::X86_64,
            json: false,
            csv: None,
            plot: None,
            tunables: Tunables::default(),
            host: "h".into(),
            incidents: Default::default(),
        };
        let r = evaluate(&opts).unwrap();
        let s: Vec<(u64, u64, u32)> = r
            .scores
            .iter()
            .map(|s| (s.calls, s.anomalous_calls, s.max_lfc))
            .collect();
        assert_eq!(s[0], s[1]);
        assert_eq!(s[0], s[3]);
        assert_eq!(s[2], (9, 0, 0));
        assert!(s[0].1 > 0);
    }
}
