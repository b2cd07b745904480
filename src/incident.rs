//! Incidents: a burst of anomalous calls in one task, reported as one `incident` line, and the
//! rule that says which incidents are alarms.
//!
//! pH reports every anomalous call. A program that goes wrong can make thousands a second, and an
//! operator wants one line saying "this task, these calls, this long". The monitor and online
//! replay feed every anomaly through [`Incidents`], which keeps one open incident per task and
//! closes it when the burst is over:
//!
//! - **idle**: no anomaly in the task for `idle` (the line's time is the last anomaly + `idle`);
//! - **exit**: the anomalous call was `exit` or `exit_group`, so the task is ending;
//! - **exec**: the task's next anomaly is under another profile (it ran a new program);
//! - **max_duration** / **max_calls**: the incident has lasted `max_duration` or counted
//!   `max_calls` anomalies; a task that keeps going opens the next one, so a runaway process
//!   yields one incident line per `max_duration`;
//! - **stopped**: the monitor stops while the task may still go on (at the end of a replay's
//!   input its tasks end too, so its incidents end idle).
//!
//! **Alarms.** Programs whose calls depend on their input show a little novelty now and then
//! long after they became normal: an isolated anomaly or two, or a short code path they had not
//! taken while training. Attacks cluster, and they make the program do what it never did
//! ([`Rule::judge`], docs/lifecycle.md "Alarms"). An incident is an alarm when
//!
//! - one of its calls is **unknown**: a system call the testing data has no pair with at all
//!   (the program never made it while it trained); or
//! - its maximum LFC went above the **tolerize limit**, and so did the number of its calls that
//!   taught the profile a new pair. A burst that mostly **repeats** a few pairs (a known loop
//!   running over more input than it had in training, a new code path taken once per file) has
//!   a high LFC but little that is new: it is counted, not alarmed.
//!
//! Under `--lifecycle ph` every incident is an alarm, as pH reports every anomalous call.
//! A quiet incident is never lost: its calls count in `ebpfh status`, the metrics and the
//! profile's anomaly count, and `log_quiet` writes its line (with `"alarm": false`).
//!
//! Only the first `anomaly_lines` anomalies of an alarm keep their own `anomaly` line (the ones
//! before it became an alarm are held and written when it does); the rest are counted in the
//! incident's `anomaly_lines_suppressed`, so nothing goes unreported. Every decision depends on
//! the anomalies' own times, never on when they are read, so the same events give the same
//! incidents in the monitor and in replay.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
// Looked up on every event: see src/monitor.rs.
use foldhash::{HashMap, HashMapExt};

use crate::jsonl::{Name, Process, ProfileRef, Record, Syscall};
use crate::model::Settings;
use crate::settings::{defaults, Lifecycle};

/// When incidents end, and how many `anomaly` lines each may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Nanoseconds without an anomaly after which a task's incident is over.
    pub idle_ns: u64,
    /// Nanoseconds after its first anomaly at which an incident is closed anyway.
    pub max_duration_ns: u64,
    /// Anomalies after which an incident is closed anyway.
    pub max_calls: u64,
    /// Anomalies of an alarm that keep their own `anomaly` line.
    pub anomaly_lines: u64,
    /// Write the lines of quiet incidents too (with `"alarm": false`).
    pub log_quiet: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_ns: crate::settings::wait_ns(defaults::INCIDENT_IDLE),
            max_duration_ns: crate::settings::wait_ns(defaults::INCIDENT_MAX_DURATION),
            max_calls: defaults::INCIDENT_MAX_CALLS,
            anomaly_lines: defaults::ANOMALY_LINES,
            log_quiet: false,
        }
    }
}

/// Which incidents are alarms (the module comment has the rule); it follows the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// An incident is an alarm when its LFC and its novel calls both went above this.
    pub tolerize_limit: u32,
    /// pH's lifecycle: every incident is an alarm.
    pub every_incident: bool,
}

impl Rule {
    /// The rule the kernel's (or the model's) settings imply.
    pub fn new(s: &Settings) -> Self {
        Rule {
            tolerize_limit: s.tolerize_limit,
            every_incident: s.lifecycle == Lifecycle::Ph,
        }
    }

    /// Whether an incident with this maximum LFC, this many unknown calls and this many calls
    /// that taught a new pair is an alarm, and the reason (its line's `alarm_reason`).
    pub fn judge(
        &self,
        max_lfc: u32,
        unknown_calls: u64,
        novel_calls: u64,
    ) -> (bool, &'static str) {
        if self.every_incident {
            (true, "every_anomaly")
        } else if unknown_calls > 0 {
            (true, "unknown_call")
        } else if max_lfc > self.tolerize_limit && novel_calls > u64::from(self.tolerize_limit) {
            (true, "tolerize_limit")
        } else if max_lfc > self.tolerize_limit {
            (false, "repeat")
        } else {
            (false, "minor")
        }
    }
}

impl Default for Rule {
    fn default() -> Self {
        Rule::new(&Settings::default())
    }
}

/// Why an incident ended (its line's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Idle,
    Exit,
    Exec,
    MaxDuration,
    MaxCalls,
    Stopped,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Idle => "idle",
            End::Exit => "exit",
            End::Exec => "exec",
            End::MaxDuration => "max_duration",
            End::MaxCalls => "max_calls",
            End::Stopped => "stopped",
        }
    }
}

/// An incident, open or ended; [`Closed::record`] makes its line.
#[derive(Clone, Debug, PartialEq)]
pub struct Closed {
    /// When it ended by its rule (see the module comment), on the callers' clock.
    pub time: u64,
    pub first: u64,
    pub last: u64,
    pub end: End,
    pub process: Process,
    pub profile: ProfileRef,
    pub anomalous_calls: u64,
    pub max_lfc: u32,
    pub syscalls: BTreeMap<Name, u64>,
    pub first_sequence: Vec<Name>,
    pub anomaly_lines: u64,
    pub profile_anomalies: u64,
    pub unknown_calls: u64,
    pub novel_calls: u64,
    /// What [`Rule::judge`] says of it (so far, while it is open).
    pub alarm: bool,
    pub alarm_reason: &'static str,
    /// The anomaly lines of an incident not (yet) an alarm, held until it becomes one.
    held: Held,
}

/// Held anomaly lines, each without the process and profile while they are those of the first
/// held line. With every line kept (`--anomaly-lines`) a quiet burst holds one line per call
/// until it ends; held as whole records, each with its own copies of the same strings, the
/// memory they grew into cost the monitor a third of its time in a storm.
#[derive(Clone, Debug, Default, PartialEq)]
struct Held {
    lines: Vec<HeldLine>,
    /// The process and profile of the first held line.
    first: Option<(Process, ProfileRef)>,
}

#[derive(Clone, Debug, PartialEq)]
struct HeldLine {
    time: u64,
    /// None: the same as `Held::first`.
    who: Option<Box<(Process, ProfileRef)>>,
    syscall: Syscall,
    misses: u16,
    new_pairs: u16,
    unknown_call: bool,
    sequence: Vec<Name>,
    lfc: u32,
    profile_anomalies: u64,
}

impl Held {
    fn len(&self) -> usize {
        self.lines.len()
    }

    fn clear(&mut self) {
        *self = Held::default();
    }

    fn push(&mut self, time: u64, line: Record) {
        let Record::Anomaly {
            process,
            profile,
            syscall,
            misses,
            new_pairs,
            unknown_call,
            sequence,
            lfc,
            profile_anomalies,
        } = line
        else {
            unreachable!("only anomaly lines are held")
        };
        let who = match &self.first {
            Some((p, r)) if *p == process && *r == profile => None,
            Some(_) => Some(Box::new((process, profile))),
            None => {
                self.first = Some((process, profile));
                None
            }
        };
        self.lines.push(HeldLine {
            time,
            who,
            syscall,
            misses,
            new_pairs,
            unknown_call,
            sequence,
            lfc,
            profile_anomalies,
        });
    }

    /// The held lines as they came, onto `out`; nothing is held after.
    fn release(&mut self, out: &mut Vec<(u64, Record)>) {
        let Held { lines, first } = std::mem::take(self);
        out.extend(lines.into_iter().map(|h| {
            let (process, profile) = match h.who {
                Some(who) => *who,
                None => first.clone().expect("the first held line set it"),
            };
            let line = Record::Anomaly {
                process,
                profile,
                syscall: h.syscall,
                misses: h.misses,
                new_pairs: h.new_pairs,
                unknown_call: h.unknown_call,
                sequence: h.sequence,
                lfc: h.lfc,
                profile_anomalies: h.profile_anomalies,
            };
            (h.time, line)
        }));
    }
}

impl Closed {
    /// The `incident` line; `utc` converts the callers' clock.
    pub fn record(self, utc: impl Fn(u64) -> DateTime<Utc>) -> Record {
        Record::Incident {
            process: self.process,
            profile: self.profile,
            first: crate::clock::rfc3339(utc(self.first)),
            last: crate::clock::rfc3339(utc(self.last)),
            reason: self.end.as_str().into(),
            anomalous_calls: self.anomalous_calls,
            max_lfc: self.max_lfc,
            syscalls: self.syscalls,
            first_sequence: self.first_sequence,
            anomaly_lines: self.anomaly_lines,
            anomaly_lines_suppressed: self.anomalous_calls - self.anomaly_lines,
            profile_anomalies: self.profile_anomalies,
            alarm: self.alarm,
            alarm_reason: self.alarm_reason.into(),
            unknown_calls: self.unknown_calls,
            novel_calls: self.novel_calls,
        }
    }
}

/// Whether a line is a quiet incident's (one that is not an alarm).
pub fn is_quiet(rec: &Record) -> bool {
    matches!(rec, Record::Incident { alarm: false, .. })
}

/// The open incidents, one per task (thread id).
#[derive(Debug, Default)]
pub struct Incidents {
    limits: Limits,
    rule: Rule,
    open: HashMap<u32, Closed>,
}

impl Incidents {
    pub fn new(limits: Limits, rule: Rule) -> Self {
        Incidents {
            limits,
            rule,
            open: HashMap::new(),
        }
    }

    /// The rule from now on (`ebpfh set` changed the tolerize limit or the lifecycle).
    pub fn set_rule(&mut self, rule: Rule) {
        self.rule = rule;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Takes one anomalous call's `anomaly` line (made at `time`, callers' clock): pushes the
    /// incidents it ends onto `ended`, in the order they ended, and the anomaly lines that go out
    /// now onto `lines`, oldest first. Any other record is pushed onto `lines` as it is.
    ///
    /// The incident reads the line's fields in place and copies them only when the call opens
    /// one: under a storm this runs for every anomalous call.
    pub fn anomaly(
        &mut self,
        time: u64,
        line: Record,
        ended: &mut Vec<Closed>,
        lines: &mut Vec<(u64, Record)>,
    ) {
        let Record::Anomaly {
            process,
            profile,
            syscall,
            sequence,
            lfc,
            new_pairs,
            unknown_call,
            profile_anomalies,
            ..
        } = &line
        else {
            lines.push((time, line));
            return;
        };
        let tid = process.tid;
        let l = self.limits;
        if let Some(cur) = self.open.get(&tid) {
            let end = if time.saturating_sub(cur.last) >= l.idle_ns {
                Some((End::Idle, cur.last.saturating_add(l.idle_ns)))
            } else if cur.profile.profile != profile.profile {
                Some((End::Exec, time))
            } else if time.saturating_sub(cur.first) >= l.max_duration_ns {
                Some((End::MaxDuration, time))
            } else if cur.anomalous_calls >= l.max_calls {
                Some((End::MaxCalls, time))
            } else {
                None
            };
            if let Some((end, at)) = end {
                let mut c = self.open.remove(&tid).expect("looked up above");
                c.end = end;
                c.time = at;
                c.held.clear();
                ended.push(c);
            }
        }
        let exit = matches!(&*syscall.name, "exit" | "exit_group");
        let cur = self.open.entry(tid).or_insert_with(|| Closed {
            time,
            first: time,
            last: time,
            end: End::Stopped,
            process: process.clone(),
            profile: profile.clone(),
            anomalous_calls: 0,
            max_lfc: 0,
            syscalls: BTreeMap::new(),
            first_sequence: sequence.clone(),
            anomaly_lines: 0,
            profile_anomalies: 0,
            unknown_calls: 0,
            novel_calls: 0,
            alarm: false,
            alarm_reason: "minor",
            held: Held::default(),
        });
        cur.last = time;
        cur.anomalous_calls += 1;
        cur.max_lfc = cur.max_lfc.max(*lfc);
        cur.unknown_calls += u64::from(*unknown_call);
        cur.novel_calls += u64::from(*new_pairs > 0);
        match cur.syscalls.get_mut(&*syscall.name) {
            Some(n) => *n += 1,
            None => {
                cur.syscalls.insert(syscall.name.clone(), 1);
            }
        }
        // The state as of the latest call: a burst can end normal monitoring.
        cur.profile.profile_state = profile.profile_state;
        cur.profile_anomalies = *profile_anomalies;
        (cur.alarm, cur.alarm_reason) =
            self.rule
                .judge(cur.max_lfc, cur.unknown_calls, cur.novel_calls);
        // The first anomaly_lines calls keep a line: held until the incident is an alarm.
        let keep = cur.anomalous_calls <= l.anomaly_lines;
        if cur.alarm {
            cur.anomaly_lines += cur.held.len() as u64 + u64::from(keep);
            cur.held.release(lines);
            if keep {
                lines.push((time, line));
            }
        } else if keep {
            cur.held.push(time, line);
        }
        if exit {
            let mut c = self.open.remove(&tid).expect("inserted above");
            c.end = End::Exit;
            c.time = time;
            c.held.clear();
            ended.push(c);
        }
    }

    /// The lines one record makes, in the order they go out, pushed onto `out`. An `anomaly`
    /// record goes through the incidents: first the task's incident it ended, then the anomaly
    /// lines it releases, then the incident it ended by an exit. Any other record passes as it
    /// is. Quiet incidents are among the lines (see [`is_quiet`]); whoever writes them decides.
    /// `time` is the record's time on the callers' clock; `utc` converts that clock.
    pub fn lines_into(
        &mut self,
        time: u64,
        rec: Record,
        utc: impl Fn(u64) -> DateTime<Utc>,
        out: &mut Vec<(u64, Record)>,
    ) {
        let at = out.len();
        let mut ended = Vec::new();
        self.anomaly(time, rec, &mut ended, out);
        // An anomalous exit ends its own incident after its line; any other ended before it.
        let by = match ended.last() {
            Some(c) if c.end == End::Exit && c.last == time => ended.pop(),
            _ => None,
        };
        if !ended.is_empty() {
            out.splice(at..at, ended.into_iter().map(|c| (c.time, c.record(&utc))));
        }
        out.extend(by.map(|c| (c.time, c.record(&utc))));
    }

    /// [`Incidents::lines_into`] into a new vector.
    pub fn lines(
        &mut self,
        time: u64,
        rec: Record,
        utc: impl Fn(u64) -> DateTime<Utc>,
    ) -> Vec<(u64, Record)> {
        let mut out = Vec::new();
        self.lines_into(time, rec, utc, &mut out);
        out
    }

    /// Closes, in the order they went idle, the incidents idle at `now` (callers' clock).
    pub fn tick(&mut self, now: u64, out: &mut Vec<Closed>) {
        let idle = self.limits.idle_ns;
        let mut due: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last) >= idle)
            .map(|(&tid, _)| tid)
            .collect();
        due.sort_by_key(|tid| (self.open[tid].last, *tid));
        for tid in due {
            let mut c = self.open.remove(&tid).expect("listed above");
            c.end = End::Idle;
            c.time = c.last.saturating_add(idle);
            c.held.clear();
            out.push(c);
        }
    }

    /// Closes every open incident because its tasks can make no more calls (a replay's input
    /// ended, and its tasks with it): each is idle from its last call on.
    pub fn close_ended(&mut self, out: &mut Vec<Closed>) {
        self.tick(u64::MAX, out);
    }

    /// Closes every open incident at `now` (the monitor stops): those already idle as idle,
    /// the others as stopped.
    pub fn close_all(&mut self, now: u64, out: &mut Vec<Closed>) {
        self.tick(now, out);
        let mut rest: Vec<Closed> = self.open.drain().map(|(_, c)| c).collect();
        rest.sort_by_key(|c| (c.last, c.process.tid));
        for mut c in rest {
            c.end = End::Stopped;
            c.time = now;
            c.held.clear();
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl::Syscall;
    use crate::profile::{ProfileKey, State};

    const MS: u64 = 1_000_000;

    fn limits() -> Limits {
        Limits {
            idle_ns: 1000 * MS,
            max_duration_ns: 10_000 * MS,
            max_calls: 1_000_000,
            anomaly_lines: 3,
            log_quiet: false,
        }
    }

    /// The default rule: tolerize limit 12.
    fn rule() -> Rule {
        Rule {
            tolerize_limit: 12,
            every_incident: false,
        }
    }

    /// pH's: every incident is an alarm (for the tests of how incidents end).
    fn all() -> Rule {
        Rule {
            every_incident: true,
            ..rule()
        }
    }

    /// One anomalous call, as a test describes it (its line is [`line`]).
    #[derive(Clone, Debug)]
    struct Anomaly {
        process: Process,
        profile: ProfileRef,
        time: u64,
        syscall: String,
        lfc: u32,
        new_pairs: u16,
        unknown: bool,
        sequence: Vec<String>,
        profile_anomalies: u64,
    }

    /// The lines that go out now for one call (the incidents it ends go onto `out`).
    fn anomaly(inc: &mut Incidents, a: &Anomaly, out: &mut Vec<Closed>) -> Vec<(u64, Record)> {
        let mut lines = Vec::new();
        inc.anomaly(a.time, line(a), out, &mut lines);
        lines
    }

    /// A call that taught one new pair and missed two.
    fn call(tid: u32, ino: u64, ms: u64, name: &str, lfc: u32) -> Anomaly {
        Anomaly {
            process: Process {
                pid: tid,
                tid,
                ppid: 1,
                uid: 0,
                comm: "x".into(),
                exe: "/x".into(),
                cgroup: None,
                container_id: None,
            },
            profile: ProfileRef::new(ProfileKey::file(1, ino), State::Normal),
            time: ms * MS,
            syscall: name.into(),
            lfc,
            new_pairs: 1,
            unknown: false,
            sequence: vec![format!("at{ms}")],
            profile_anomalies: lfc.into(),
        }
    }

    fn repeat(a: Anomaly) -> Anomaly {
        Anomaly { new_pairs: 0, ..a }
    }

    fn line(a: &Anomaly) -> Record {
        Record::Anomaly {
            process: a.process.clone(),
            profile: a.profile.clone(),
            syscall: Syscall {
                nr: 0,
                name: a.syscall.clone().into(),
            },
            misses: 2,
            new_pairs: a.new_pairs,
            unknown_call: a.unknown,
            sequence: a.sequence.iter().map(|s| s.clone().into()).collect(),
            lfc: a.lfc,
            profile_anomalies: a.profile_anomalies,
        }
    }

    /// Feeds calls in order; returns the closed incidents and the times of the anomaly lines
    /// that went out, in the order they went out.
    fn feed(inc: &mut Incidents, calls: Vec<Anomaly>) -> (Vec<Closed>, Vec<u64>) {
        let mut out = Vec::new();
        let mut lines = Vec::new();
        for c in calls {
            lines.extend(anomaly(inc, &c, &mut out).into_iter().map(|(t, _)| t));
        }
        (out, lines)
    }

    fn close(inc: &mut Incidents) -> Vec<Closed> {
        let mut out = Vec::new();
        inc.close_ended(&mut out);
        out
    }

    #[test]
    fn the_rule_alarms_on_unknown_calls_and_new_bursts_above_the_tolerize_limit() {
        let r = rule();
        assert_eq!(r.judge(1, 0, 1), (false, "minor"), "an isolated novelty");
        assert_eq!(r.judge(12, 0, 12), (false, "minor"), "up to the limit");
        assert_eq!(
            r.judge(13, 0, 13),
            (true, "tolerize_limit"),
            "above, and as much of it new"
        );
        assert_eq!(
            r.judge(40, 0, 0),
            (false, "repeat"),
            "only pending pairs again"
        );
        assert_eq!(
            r.judge(40, 0, 12),
            (false, "repeat"),
            "a few new pairs, repeated"
        );
        assert_eq!(
            r.judge(12, 0, 13),
            (false, "minor"),
            "new, but spread out: the LFC stayed at the limit"
        );
        assert_eq!(r.judge(1, 1, 0), (true, "unknown_call"));
        assert_eq!(all().judge(1, 0, 0), (true, "every_anomaly"));
        let s = Settings::default();
        assert_eq!(Rule::new(&s), rule(), "the default tolerize limit is 12");
        let ph = Settings {
            lifecycle: Lifecycle::Ph,
            tolerize_limit: 30,
            ..s
        };
        assert_eq!(
            Rule::new(&ph),
            Rule {
                tolerize_limit: 30,
                every_incident: true
            }
        );
    }

    #[test]
    fn an_isolated_novelty_is_a_quiet_incident_with_no_lines_but_counted() {
        let mut inc = Incidents::new(limits(), rule());
        let (out, lines) = feed(
            &mut inc,
            vec![call(7, 1, 0, "brk", 1), call(7, 1, 10, "write", 2)],
        );
        assert!(out.is_empty());
        assert!(lines.is_empty(), "nothing is written for it");
        let c = close(&mut inc).pop().unwrap();
        assert_eq!((c.alarm, c.alarm_reason), (false, "minor"));
        assert_eq!(
            (c.anomalous_calls, c.anomaly_lines, c.novel_calls),
            (2, 0, 2)
        );
        let rec = c.record(|ns| DateTime::from_timestamp_nanos(ns as i64));
        assert!(is_quiet(&rec));
        match rec {
            Record::Incident {
                anomaly_lines_suppressed,
                alarm_reason,
                ..
            } => {
                assert_eq!(anomaly_lines_suppressed, 2, "both calls are counted");
                assert_eq!(alarm_reason, "minor");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn held_lines_go_out_in_order_when_the_burst_becomes_an_alarm() {
        let mut inc = Incidents::new(limits(), rule());
        let calls = (1..=20).map(|i| call(7, 1, i, "write", i as u32)).collect();
        let (_, lines) = feed(&mut inc, calls);
        // Calls 1-3 were held; call 13 (LFC 13 > 12) made it an alarm and released them.
        assert_eq!(lines, vec![MS, 2 * MS, 3 * MS]);
        let c = close(&mut inc).pop().unwrap();
        assert_eq!(
            (c.alarm, c.alarm_reason, c.anomaly_lines),
            (true, "tolerize_limit", 3)
        );
        assert!(!is_quiet(
            &c.record(|ns| DateTime::from_timestamp_nanos(ns as i64))
        ));
    }

    #[test]
    fn held_lines_go_out_as_they_came_when_their_process_or_profile_changes() {
        let limits = Limits {
            anomaly_lines: 4,
            ..limits()
        };
        let mut inc = Incidents::new(limits, rule());
        let mut calls: Vec<Anomaly> = (1..=4).map(|i| call(7, 1, i, "write", i as u32)).collect();
        // The task renamed itself and back, then its profile left normal monitoring.
        calls[1].process.comm = "renamed".into();
        calls[3].profile.profile_state = State::Frozen;
        let mut unknown = call(7, 1, 5, "read", 5);
        unknown.unknown = true;
        calls.push(unknown);
        let mut out = Vec::new();
        let lines: Vec<(u64, Record)> = calls
            .iter()
            .flat_map(|c| anomaly(&mut inc, c, &mut out))
            .collect();
        // Calls 1-4 were held and call 5, a call the program never made, made the burst an
        // alarm.
        let want: Vec<(u64, Record)> = calls[..4].iter().map(|c| (c.time, line(c))).collect();
        assert_eq!(lines, want);
    }

    #[test]
    fn lines_into_a_reused_buffer_keep_every_task_in_order() {
        // Two tasks interleaved, as the monitor feeds them: one buffer drained after each call.
        let mut inc = Incidents::new(
            Limits {
                anomaly_lines: 1000,
                ..limits()
            },
            all(),
        );
        let utc = |t: u64| DateTime::from_timestamp_nanos(t as i64);
        let mut buf = Vec::new();
        let mut seen: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut incidents = 0;
        for i in 1..=500u64 {
            let tid = if i % 3 == 0 { 8 } else { 7 };
            let name = if i == 499 { "exit_group" } else { "write" };
            inc.lines_into(i * MS, line(&call(tid, 1, i, name, 1)), utc, &mut buf);
            for (t, rec) in buf.drain(..) {
                match rec {
                    Record::Anomaly { process, .. } => seen.entry(process.tid).or_default().push(t),
                    Record::Incident { .. } => incidents += 1,
                    other => panic!("unexpected line {other:?}"),
                }
            }
        }
        let want = |tid: u32| -> Vec<u64> {
            (1..=500u64)
                .filter(|i| (if i % 3 == 0 { 8 } else { 7 }) == tid)
                .map(|i| i * MS)
                .collect()
        };
        assert_eq!(seen[&7], want(7), "task 7's lines, every one, in order");
        assert_eq!(seen[&8], want(8));
        assert_eq!(incidents, 1, "task 7's exit ended its incident");
    }

    #[test]
    fn a_burst_that_mostly_repeats_pending_pairs_is_quiet() {
        let mut inc = Incidents::new(limits(), rule());
        let calls = (1..=30)
            .map(|i| repeat(call(7, 1, i, "close", i as u32)))
            .collect();
        let (_, lines) = feed(&mut inc, calls);
        assert!(lines.is_empty());
        let c = close(&mut inc).pop().unwrap();
        assert_eq!(
            (c.alarm, c.alarm_reason, c.novel_calls),
            (false, "repeat", 0)
        );
        // The same burst with a few new pairs in it: still quiet.
        let mut calls: Vec<Anomaly> = (1..=30)
            .map(|i| repeat(call(7, 1, i, "close", i as u32)))
            .collect();
        for c in &mut calls[..12] {
            c.new_pairs = 1;
        }
        let (_, lines) = feed(&mut inc, calls);
        assert!(lines.is_empty());
        assert_eq!(close(&mut inc).pop().unwrap().alarm_reason, "repeat");
        // One more call that taught a new pair: an alarm from the 13th call on.
        let mut calls: Vec<Anomaly> = (1..=30)
            .map(|i| repeat(call(7, 1, i, "close", i as u32)))
            .collect();
        for c in &mut calls[..13] {
            c.new_pairs = 1;
        }
        let (_, lines) = feed(&mut inc, calls);
        assert_eq!(lines.len(), 3);
        assert_eq!(
            close(&mut inc).pop().unwrap().alarm_reason,
            "tolerize_limit"
        );
    }

    #[test]
    fn one_unknown_call_is_an_alarm_at_once() {
        let mut inc = Incidents::new(limits(), rule());
        let mut a = call(7, 1, 0, "execve", 1);
        a.unknown = true;
        let (_, lines) = feed(&mut inc, vec![call(7, 1, 0, "brk", 1), a]);
        assert_eq!(lines, vec![0, 0], "the held brk, then the execve");
        let c = close(&mut inc).pop().unwrap();
        assert_eq!(
            (c.alarm, c.alarm_reason, c.unknown_calls),
            (true, "unknown_call", 1)
        );
    }

    #[test]
    fn a_burst_is_one_incident_with_its_counts_and_bounded_lines() {
        let mut inc = Incidents::new(limits(), rule());
        let calls = (0..200)
            .map(|i| {
                call(
                    7,
                    1,
                    i,
                    if i % 2 == 0 { "write" } else { "read" },
                    (i % 40) as u32,
                )
            })
            .collect();
        let (out, lines) = feed(&mut inc, calls);
        assert!(out.is_empty(), "nothing ends while the burst goes on");
        assert_eq!(
            lines.len(),
            3,
            "only the first anomaly_lines keep their line"
        );
        let mut out = Vec::new();
        inc.tick((199 + 999) * MS, &mut out);
        assert!(out.is_empty(), "not idle yet");
        inc.tick((199 + 1000) * MS, &mut out);
        assert_eq!(out.len(), 1);
        let c = out.pop().unwrap();
        assert_eq!((c.end, c.first, c.last), (End::Idle, 0, 199 * MS));
        assert_eq!(c.time, 1199 * MS);
        assert_eq!(
            (c.anomalous_calls, c.max_lfc, c.anomaly_lines),
            (200, 39, 3)
        );
        assert_eq!((c.alarm, c.alarm_reason), (true, "tolerize_limit"));
        assert_eq!(c.syscalls.get("write"), Some(&100));
        assert_eq!(c.syscalls.get("read"), Some(&100));
        assert_eq!(c.first_sequence, vec!["at0".to_string()]);
        match c.record(|ns| DateTime::from_timestamp_nanos(ns as i64)) {
            Record::Incident {
                anomaly_lines_suppressed,
                reason,
                first,
                alarm,
                ..
            } => {
                assert_eq!(anomaly_lines_suppressed, 197);
                assert_eq!(reason, "idle");
                assert_eq!(first, "1970-01-01T00:00:00.000000000Z");
                assert!(alarm);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(inc.open_count(), 0);
    }

    #[test]
    fn a_pause_longer_than_idle_splits_the_burst() {
        let mut inc = Incidents::new(limits(), all());
        let (out, lines) = feed(
            &mut inc,
            vec![
                call(7, 1, 0, "write", 1),
                call(7, 1, 500, "write", 2),
                call(7, 1, 1600, "brk", 1),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].end, out[0].anomalous_calls), (End::Idle, 2));
        assert_eq!(out[0].time, 1500 * MS, "it ended idle after its last call");
        assert_eq!(lines.len(), 3, "the new incident gets its own lines");
        let mut rest = Vec::new();
        inc.close_all(1700 * MS, &mut rest);
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].end, rest[0].anomalous_calls), (End::Stopped, 1));
        assert_eq!(rest[0].time, 1700 * MS);
        feed(&mut inc, vec![call(7, 1, 2000, "brk", 1)]);
        let ended = close(&mut inc);
        assert_eq!((ended[0].end, ended[0].time), (End::Idle, 3000 * MS));
    }

    #[test]
    fn an_anomalous_exit_closes_at_once_and_tasks_are_apart() {
        let mut inc = Incidents::new(limits(), all());
        let (out, _) = feed(
            &mut inc,
            vec![
                call(7, 1, 0, "write", 1),
                call(8, 1, 1, "write", 1),
                call(7, 1, 2, "exit_group", 2),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].process.tid, 7);
        assert_eq!((out[0].end, out[0].time), (End::Exit, 2 * MS));
        assert_eq!(out[0].anomalous_calls, 2);
        assert_eq!(inc.open_count(), 1, "task 8's incident is still open");
        // As one record's lines: an exit a second after the last anomaly ends the idle
        // incident before the call's line and its own incident after it.
        let a = call(8, 1, 1500, "exit_group", 1);
        let utc = |t: u64| DateTime::from_timestamp_nanos(t as i64);
        // A line already waiting stays first.
        let before = Record::MonitorStopped {
            pid: 1,
            reason: "test".into(),
            profiles_saved: 0,
            profiles_failed: 0,
        };
        let mut out = vec![(0, before)];
        inc.lines_into(a.time, line(&a), utc, &mut out);
        let kinds: Vec<&str> = out.iter().map(|(_, r)| r.kind()).collect();
        assert_eq!(
            kinds,
            ["monitor_stopped", "incident", "anomaly", "incident"]
        );
        let reasons: Vec<(u64, &str, u64)> = out
            .iter()
            .filter_map(|(t, r)| match r {
                Record::Incident {
                    reason,
                    anomalous_calls,
                    ..
                } => Some((*t, reason.as_str(), *anomalous_calls)),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, [(1001 * MS, "idle", 1), (1500 * MS, "exit", 1)]);
    }

    #[test]
    fn a_new_profile_in_the_task_closes_the_old_incident() {
        let mut inc = Incidents::new(limits(), all());
        let (out, _) = feed(
            &mut inc,
            vec![call(7, 1, 0, "execve", 1), call(7, 2, 5, "brk", 1)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].end, out[0].anomalous_calls), (End::Exec, 1));
        assert_eq!(out[0].profile.profile, "1:1");
    }

    #[test]
    fn a_runaway_task_is_cut_into_incidents_of_max_duration_and_max_calls() {
        let mut inc = Incidents::new(
            Limits {
                max_calls: 50_000,
                ..limits()
            },
            rule(),
        );
        // One anomaly per 0.1 ms for 30 s: 300,000 calls.
        let mut out = Vec::new();
        let mut lines = 0;
        for i in 0..300_000u64 {
            let mut c = call(7, 1, 0, "write", 13);
            c.time = i * MS / 10;
            lines += anomaly(&mut inc, &c, &mut out).len();
        }
        // 10 s hold 100,000 calls, so max_calls (50,000) cuts first: 5 s per incident.
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|c| c.end == End::MaxCalls));
        assert!(out.iter().all(|c| c.anomalous_calls == 50_000));
        assert_eq!(lines, 6 * 3);
        let mut inc = Incidents::new(limits(), rule());
        let mut out = Vec::new();
        for i in 0..300_000u64 {
            let mut c = call(7, 1, 0, "write", 13);
            c.time = i * MS / 10;
            anomaly(&mut inc, &c, &mut out);
        }
        assert_eq!(out.len(), 2, "cut at 10 s and 20 s");
        assert!(out.iter().all(|c| c.end == End::MaxDuration));
        assert_eq!(out[0].anomalous_calls, 100_000);
        assert_eq!(out[1].first, 10_000 * MS);
    }

    #[test]
    fn tick_closes_in_the_order_incidents_went_idle() {
        let mut inc = Incidents::new(limits(), rule());
        feed(
            &mut inc,
            vec![
                call(9, 1, 30, "write", 1),
                call(3, 1, 10, "write", 1),
                call(5, 1, 2000, "write", 1),
            ],
        );
        let mut out = Vec::new();
        inc.tick(1500 * MS, &mut out);
        let tids: Vec<u32> = out.iter().map(|c| c.process.tid).collect();
        assert_eq!(tids, vec![3, 9]);
        assert_eq!(inc.open_count(), 1);
    }
}
