//! Online replay: the full pH state machine over traces in order, printing the monitor's JSON
//! lines.
//!
//! Unlike evaluation, nothing is frozen by hand: profiles train, freeze, wait `normal_wait` and
//! turn normal as they would have on the machine, and every event the model reports becomes the
//! line the monitor writes for it. What a trace does not carry is filled in as documented in the
//! README: `uid` is 4294967295 ((uid_t)-1, unknown), `comm` is the executable's base name cut to
//! 15 bytes, `host` is `--host`.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::formats::{self, Format};
use super::{inputs, progress, Options, Unknown, Wait};
use crate::clock::TaiClock;
use crate::incident::{self, Incidents, Rule};
use crate::jsonl::{self, ProfileRef, Record as Line};
use crate::model::{Event, Model, Settings};
use crate::profile::{ProfileKey, State};
use crate::syscalls::Abi;
use crate::trace::Record;

/// What a JSON line says about a task; learnt from the trace's records.
#[derive(Clone, Debug, Default)]
struct Proc {
    tgid: u32,
    ppid: u32,
}

struct Online<'o> {
    model: Model,
    procs: HashMap<u32, Proc>,
    /// Executable and script (empty if none) of each profile.
    names: HashMap<ProfileKey, (String, String)>,
    host: &'o str,
    abi: Abi,
    /// Calls replayed so far: the clock of `--normal-wait Ncalls`.
    calls: u64,
    by_calls: bool,
    /// Whether the current file's times are CLOCK_TAI (ebt) rather than UTC.
    tai: bool,
    /// Whether the current file carries times at all.
    timed: bool,
    clock: TaiClock,
    /// Settings given on the command line win over a recording's.
    keep_settings: bool,
    events: Vec<Event>,
    /// The model's clock at the latest record (trace time, or calls with `Ncalls`).
    now: u64,
    /// The time the latest record's events happened at (what `feed` returns).
    last_time: u64,
    /// The task the latest record ended.
    exited: Option<u32>,
    incidents: Incidents,
}

fn comm(exe: &str) -> String {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    let mut end = base.len().min(15);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    base[..end].to_string()
}

impl Online<'_> {
    fn name(&self, sym: u16) -> crate::jsonl::Name {
        self.abi
            .name(sym)
            .map_or_else(|| format!("syscall_{sym}").into(), Into::into)
    }

    fn utc(&self, time: u64) -> DateTime<Utc> {
        self.utc_fn()(time)
    }

    /// Feeds one record; returns the time its events happened at.
    fn feed(&mut self, r: &Record) -> u64 {
        match r {
            Record::Exe { key, path, script } => {
                self.names.insert(*key, (path.clone(), script.clone()));
            }
            Record::Exec { tid, tgid, .. } | Record::Adopt { tid, tgid, .. } => {
                let ppid = self.procs.get(tid).map_or(0, |p| p.ppid);
                self.procs.insert(*tid, Proc { tgid: *tgid, ppid });
            }
            Record::Fork {
                child,
                tgid,
                parent,
                ..
            } => {
                let p = self.procs.get(parent).cloned().unwrap_or_default();
                // A thread shares its creator's parent; a process's parent is its creator.
                let ppid = if *tgid == p.tgid { p.ppid } else { p.tgid };
                self.procs.insert(*child, Proc { tgid: *tgid, ppid });
            }
            _ => {}
        }
        let time = match *r {
            Record::Call { time, .. }
            | Record::Exit { time, .. }
            | Record::Signal { time, .. }
            | Record::Sigreturn { time, .. }
            | Record::Exec { time, .. }
            | Record::Adopt { time, .. }
            | Record::Fork { time, .. } => time,
            _ => 0,
        };
        if matches!(r, Record::Call { .. }) {
            self.calls += 1;
        }
        let now = if self.by_calls { self.calls } else { time };
        if time != 0 || self.by_calls {
            self.now = now;
        }
        match r {
            Record::Settings { .. } if self.keep_settings => {}
            Record::Call { tid, nr, .. } => {
                self.model
                    .syscall_into(*tid, i64::from(*nr), now, &mut self.events)
            }
            Record::Exit { tid, .. } => self.model.exit_into(*tid, now, &mut self.events),
            Record::Exec { tid, key, .. } | Record::Adopt { tid, key, .. } => {
                self.events.extend(self.model.exec(*tid, *key, now))
            }
            other => crate::trace::feed(&mut self.model, other, &mut self.events),
        }
        // Forgotten at the next record, so the lines of this exit's events still name it.
        if let Some(tid) = self.exited.take() {
            self.procs.remove(&tid);
        }
        if let Record::Exit { tid, .. } = r {
            self.exited = Some(*tid);
        }
        self.last_time = if self.timed {
            time
        } else {
            // Untimed input: one nanosecond after the epoch per call replayed.
            self.calls
        };
        self.last_time
    }

    /// The lines an event makes at `time`, through the incidents as in the monitor.
    fn lines(&mut self, e: &Event, time: u64, out: &mut Vec<(u64, Line)>) {
        let line = self.line(e);
        let utc = self.utc_fn();
        // The recording's settings may have replaced the model's: the rule follows them.
        self.incidents.set_rule(Rule::new(self.model.settings()));
        let log_quiet = self.incidents.limits().log_quiet;
        out.extend(
            self.incidents
                .lines(time, line, utc)
                .into_iter()
                .filter(|(_, l)| log_quiet || !incident::is_quiet(l)),
        );
    }

    /// [`Online::utc`] as a function that does not hold on to `self`.
    fn utc_fn(&self) -> impl Fn(u64) -> DateTime<Utc> {
        let (tai, clock) = (self.tai, self.clock);
        move |time| {
            if tai {
                clock.to_utc(time)
            } else {
                DateTime::from_timestamp_nanos(i64::try_from(time).unwrap_or(i64::MAX))
            }
        }
    }

    /// Ends the incidents idle at `now`; with `ended`, all of them (the input's tasks ended).
    fn close_incidents(&mut self, now: u64, ended: bool, out: &mut Vec<(u64, Line)>) {
        let mut closed = Vec::new();
        if ended {
            self.incidents.close_ended(&mut closed);
        } else {
            self.incidents.tick(now, &mut closed);
        }
        let utc = self.utc_fn();
        let log_quiet = self.incidents.limits().log_quiet;
        out.extend(
            closed
                .into_iter()
                .filter(|c| log_quiet || c.alarm)
                .map(|c| (c.time, c.record(&utc))),
        );
    }

    fn line(&self, e: &Event) -> Line {
        let (tid, key) = (e.tid(), e.key());
        let p = self
            .procs
            .get(&tid)
            .cloned()
            .unwrap_or(Proc { tgid: tid, ppid: 0 });
        let (exe, script) = self.names.get(&key).cloned().unwrap_or_default();
        let process = jsonl::Process {
            pid: p.tgid,
            tid,
            ppid: p.ppid,
            uid: u32::MAX,
            comm: comm(&exe),
            exe,
            cgroup: None,
            container_id: None,
        };
        let state = State::from_bits(self.model.state(key).unwrap_or(0));
        let profile = ProfileRef::new(key, state).with_script(&script);
        let cx = jsonl::Context {
            process,
            profile,
            // Replay has the trace's paths, not the executables' bytes.
            sha256: None,
        };
        Line::from_event(e, cx, |s| self.name(s))
    }
}

/// Whether a file's records carry times (checked before replaying, so a duration wait on
/// untimed input is refused before any line is printed).
fn timed(input: &super::Input) -> bool {
    match input.format {
        Format::Ebt => true,
        Format::PidNr | Format::Adfa => false,
        Format::Strace => {
            let mut head = Vec::new();
            let ok = std::fs::File::open(&input.path).and_then(|f| {
                use std::io::Read;
                f.take(4096).read_to_end(&mut head)
            });
            ok.is_ok() && formats::strace_timed(&String::from_utf8_lossy(&head))
        }
    }
}

/// Replays `opts.paths` in order through one model and writes JSON lines to `out`.
pub fn run(opts: &Options, out: &mut dyn Write) -> Result<()> {
    let files = inputs(&opts.paths, opts.format)?;
    let t = &opts.tunables;
    let by_calls = matches!(t.normal_wait, Some(Wait::Calls(_)));
    if !by_calls {
        if let Some(f) = files.iter().find(|f| !timed(f)) {
            anyhow::bail!(
                "'{}' has no timestamps, so a normal wait in time cannot pass; give --normal-wait as a number of calls (e.g. --normal-wait 5000calls)",
                f.path.display()
            );
        }
    }
    let defaults = Settings::default();
    let settings = Settings {
        normal_wait_ns: match t.normal_wait {
            Some(Wait::Calls(n)) => n,
            Some(Wait::Time(d)) => crate::settings::wait_ns(d),
            None => defaults.normal_wait_ns,
        },
        anomaly_limit: t.anomaly_limit.unwrap_or(defaults.anomaly_limit),
        tolerize_limit: t.tolerize_limit.unwrap_or(defaults.tolerize_limit),
        normal_factor: t.normal_factor.unwrap_or(defaults.normal_factor),
        normal_factor_den: t.normal_factor_den.unwrap_or(defaults.normal_factor_den),
        log_sequences: t.log_sequences,
        monitoring: true,
        lifecycle: t.lifecycle.unwrap_or(defaults.lifecycle),
    };
    let keep_settings = t.lifecycle.is_some()
        || t.normal_wait.is_some()
        || t.anomaly_limit.is_some()
        || t.tolerize_limit.is_some()
        || t.normal_factor.is_some()
        || t.normal_factor_den.is_some();
    let mut o = Online {
        model: Model::new(settings),
        procs: HashMap::new(),
        names: HashMap::new(),
        host: &opts.host,
        abi: opts.abi,
        calls: 0,
        by_calls,
        tai: false,
        timed: false,
        clock: TaiClock::new(),
        keep_settings,
        events: Vec::new(),
        now: 0,
        last_time: 0,
        exited: None,
        incidents: Incidents::new(opts.incidents, Rule::default()),
    };
    let bar = progress(&files);
    let mut unknown = Unknown::default();
    let mut write_err: Option<std::io::Error> = None;
    for f in &files {
        o.tai = f.format == Format::Ebt;
        o.timed = timed(f);
        // A recording holds the recording machine's calls; assume it was this kind of machine.
        o.abi = if o.tai { Abi::Native } else { opts.abi };
        let info = formats::read(&f.path, f.format, opts.abi, &mut |r| {
            let time = o.feed(r);
            let mut lines = Vec::new();
            // Incidents idle by now end before anything that happens now, as in the monitor.
            o.close_incidents(time, false, &mut lines);
            for e in std::mem::take(&mut o.events) {
                o.lines(&e, time, &mut lines);
            }
            for (t, rec) in lines {
                let line = jsonl::to_line(o.utc(t), o.host, &rec);
                if write_err.is_none() {
                    if let Err(e) = writeln!(out, "{line}") {
                        write_err = Some(e);
                    }
                }
            }
        })?;
        // The file's tasks end with it, and so do their incidents.
        let mut lines = Vec::new();
        o.close_incidents(0, true, &mut lines);
        for (t, rec) in lines {
            if write_err.is_none() {
                if let Err(e) = writeln!(out, "{}", jsonl::to_line(o.utc(t), o.host, &rec)) {
                    write_err = Some(e);
                }
            }
        }
        if let Some(e) = write_err.take() {
            return Err(e).context("cannot write to standard output");
        }
        unknown.add(&info);
        // Tasks alive at the end of a file end their runs there, at the last time replayed.
        let mut ended = Vec::new();
        super::exit_all(&mut o.model, o.now, &mut ended);
        for e in ended {
            let line = jsonl::to_line(o.utc(o.last_time), o.host, &o.line(&e));
            if let Err(e) = writeln!(out, "{line}") {
                return Err(e).context("cannot write to standard output");
            }
        }
        o.procs.clear();
        bar.inc(f.bytes);
    }
    bar.finish_and_clear();
    unknown.report(opts.abi);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_the_base_name_cut_like_the_kernel() {
        assert_eq!(comm("/usr/bin/python3.11"), "python3.11");
        assert_eq!(comm("/x/a-very-long-program-name"), "a-very-long-pro");
        assert_eq!(comm("(global)"), "(global)");
    }
}
