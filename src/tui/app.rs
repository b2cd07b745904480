//! The dashboard's state: what is shown, what is selected, and how actions change it.
//!
//! Handlers write, rendering reads: [`App::apply`] turns an [`Action`] into state changes and,
//! when the monitor must do something, an [`Ask`] for the collector thread. Nothing here does I/O.

use std::collections::VecDeque;

use crate::control::protocol::{Op, ProcessRow, ProfileDetail, ProfileRow, Snapshot, Target};
use crate::jsonl::{Line, Process, Record};
use crate::profile::State;

/// Feed entries kept.
const FEED: usize = 500;
/// Rows a page key moves.
const PAGE: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Profiles,
    Processes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter.
    Filter,
    /// A command waits for y/n.
    Confirm {
        op: Op,
        key: String,
        name: String,
    },
    Help,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileSort {
    Rate,
    Calls,
    Anomalies,
    State,
    Pairs,
    Exe,
}

impl ProfileSort {
    fn next(self) -> Self {
        use ProfileSort::*;
        match self {
            Rate => Calls,
            Calls => Anomalies,
            Anomalies => State,
            State => Pairs,
            Pairs => Exe,
            Exe => Rate,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ProfileSort::Rate => "calls/s",
            ProfileSort::Calls => "calls",
            ProfileSort::Anomalies => "anomalies",
            ProfileSort::State => "state",
            ProfileSort::Pairs => "pairs",
            ProfileSort::Exe => "exe",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessSort {
    Calls,
    Lfc,
    Pid,
    Comm,
}

impl ProcessSort {
    fn next(self) -> Self {
        use ProcessSort::*;
        match self {
            Calls => Lfc,
            Lfc => Pid,
            Pid => Comm,
            Comm => Calls,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ProcessSort::Calls => "calls",
            ProcessSort::Lfc => "LFC",
            ProcessSort::Pid => "pid",
            ProcessSort::Comm => "comm",
        }
    }
}

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Esc: leave the detail view, the filter or a popup; quit from the main views.
    Back,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    SwitchView,
    Sort,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    Open,
    Command(Op),
    Confirm,
    Cancel,
    Help,
}

/// Work for the collector thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    Command(Op, Target),
    /// Follow this profile's details on every refresh (None: stop).
    Detail(Option<String>),
    Refresh,
}

/// One line of the event feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedItem {
    /// `HH:MM:SS` (UTC).
    pub time: String,
    pub kind: String,
    pub text: String,
}

impl FeedItem {
    /// A feed line for an event line, or None for events the feed does not show.
    pub fn from_line(line: &Line) -> Option<FeedItem> {
        let time = line.time.get(11..19).unwrap_or("--:--:--").to_string();
        let who = |p: &Process| format!("pid {} {} {}", p.pid, p.comm, p.exe);
        let text = match &line.record {
            Record::Anomaly {
                process,
                syscall,
                misses,
                sequence,
                lfc,
                ..
            } => format!(
                "{:<14} {}  misses {misses} LFC {lfc}  [{}]",
                syscall.name,
                who(process),
                sequence.join(" ")
            ),
            Record::Incident {
                process,
                anomalous_calls,
                max_lfc,
                syscalls,
                reason,
                alarm,
                alarm_reason,
                ..
            } => {
                // The most frequent anomalous calls first.
                let mut calls: Vec<(&crate::jsonl::Name, &u64)> = syscalls.iter().collect();
                calls.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let names: Vec<&str> = calls.iter().take(5).map(|(k, _)| &***k).collect();
                // A quiet incident reaches the feed only with --log-quiet; say it is one.
                let quiet = if *alarm {
                    String::new()
                } else {
                    format!(", quiet: {alarm_reason}")
                };
                format!(
                    "{:<14} {}  {anomalous_calls} calls max LFC {max_lfc} ({reason}{quiet})",
                    names.join(","),
                    who(process)
                )
            }
            Record::NormalStarted { process, .. } => format!("{} is now normal", process.exe),
            Record::NormalStopped {
                process, reason, ..
            } => format!("{} is no longer normal ({reason})", process.exe),
            Record::TolerizeLimit { process, lfc, .. } => {
                format!("{} passed the tolerize limit (LFC {lfc})", who(process))
            }
            Record::PendingAccepted {
                process, pending, ..
            } => format!(
                "{}: {pending} pending pair sets accepted (shown again by 8 runs)",
                process.exe
            ),
            Record::Command {
                peer_uid,
                peer_pid,
                command,
                exe,
                setting,
                value,
                result,
                error,
                ..
            } => {
                let what = match setting {
                    Some(setting) => {
                        format!("set {setting} {}", value.as_deref().unwrap_or_default())
                    }
                    None => format!("{command} {}", exe.as_deref().unwrap_or_default()),
                };
                format!(
                    "{what} by uid {peer_uid} pid {peer_pid}: {}",
                    error.as_deref().unwrap_or(result)
                )
            }
            Record::Delay {
                process,
                lfc,
                delay_ms,
                ..
            } => format!("{} delayed {delay_ms} ms (LFC {lfc})", who(process)),
            Record::Resumed {
                pid,
                stopped_ms,
                reason,
                ..
            } => format!("pid {pid} resumed after {stopped_ms} ms ({reason})"),
            Record::ExecveDenied {
                process,
                lfc,
                filename,
                killed,
                ..
            } => format!(
                "{} denied execve of {filename} (LFC {lfc}){}",
                who(process),
                if *killed { ", killed" } else { "" }
            ),
            Record::EventsLost { lost, failed } => format!(
                "the kernel lost events {} failed {}",
                serde_json::to_string(lost).unwrap_or_default(),
                serde_json::to_string(failed).unwrap_or_default()
            ),
            Record::ProfileImported { outcome } => format!(
                "imported {} ({}){}",
                outcome.exe,
                outcome.result,
                outcome
                    .profile_state
                    .map(|s| format!(": now {s}"))
                    .unwrap_or_default()
            ),
            Record::ProfileCreated { .. }
            | Record::NewSequence { .. }
            | Record::MonitorStarted { .. }
            | Record::MonitorStopped { .. } => return None,
        };
        Some(FeedItem {
            time,
            kind: line.record.kind().to_string(),
            text,
        })
    }
}

#[derive(Debug)]
pub struct App {
    pub view: View,
    pub mode: Mode,
    /// Key of the profile whose detail view is open.
    pub detail: Option<String>,
    pub detail_data: Option<ProfileDetail>,
    /// Selected row of the heat map.
    pub detail_sel: usize,
    pub snapshot: Snapshot,
    /// Whether a snapshot has arrived yet.
    pub loaded: bool,
    /// Who serves the data: "monitor pid N" or "in-process monitor".
    pub source: String,
    pub profile_sort: ProfileSort,
    pub process_sort: ProcessSort,
    pub filter: String,
    /// Indices into `snapshot.profiles` / `snapshot.processes`, filtered and sorted.
    pub profile_rows: Vec<usize>,
    pub process_rows: Vec<usize>,
    pub profile_sel: usize,
    pub process_sel: usize,
    /// Newest first.
    pub feed: VecDeque<FeedItem>,
    pub calls_history: Vec<u64>,
    pub anomaly_history: Vec<u64>,
    /// The last command result or problem, shown in the footer.
    pub message: Option<(bool, String)>,
    pub quit: bool,
}

impl App {
    pub fn new(source: impl Into<String>) -> App {
        App {
            view: View::Profiles,
            mode: Mode::Normal,
            detail: None,
            detail_data: None,
            detail_sel: 0,
            snapshot: Snapshot::default(),
            loaded: false,
            source: source.into(),
            profile_sort: ProfileSort::Rate,
            process_sort: ProcessSort::Calls,
            filter: String::new(),
            profile_rows: Vec::new(),
            process_rows: Vec::new(),
            profile_sel: 0,
            process_sel: 0,
            feed: VecDeque::new(),
            calls_history: Vec::new(),
            anomaly_history: Vec::new(),
            message: None,
            quit: false,
        }
    }

    pub fn selected_profile(&self) -> Option<&ProfileRow> {
        self.profile_rows
            .get(self.profile_sel)
            .and_then(|&i| self.snapshot.profiles.get(i))
    }

    pub fn selected_process(&self) -> Option<&ProcessRow> {
        self.process_rows
            .get(self.process_sel)
            .and_then(|&i| self.snapshot.processes.get(i))
    }

    /// Takes a new snapshot, keeping the same profile and process selected.
    pub fn set_snapshot(&mut self, snap: Snapshot) {
        let prof_key = self.selected_profile().map(|p| p.profile.clone());
        let pid = self.selected_process().map(|p| p.pid);
        self.calls_history = snap
            .status
            .history
            .iter()
            .map(|s| s.calls_per_sec.round() as u64)
            .collect();
        self.anomaly_history = snap
            .status
            .history
            .iter()
            .map(|s| s.anomalies_per_sec.ceil() as u64)
            .collect();
        self.snapshot = snap;
        self.loaded = true;
        self.rebuild();
        if let Some(k) = prof_key {
            if let Some(i) = self
                .profile_rows
                .iter()
                .position(|&i| self.snapshot.profiles[i].profile == k)
            {
                self.profile_sel = i;
            }
        }
        if let Some(pid) = pid {
            if let Some(i) = self
                .process_rows
                .iter()
                .position(|&i| self.snapshot.processes[i].pid == pid)
            {
                self.process_sel = i;
            }
        }
    }

    pub fn set_detail(&mut self, d: ProfileDetail) {
        if self.detail.as_deref() == Some(d.row.profile.as_str()) {
            self.detail_data = Some(d);
        }
    }

    pub fn push_event(&mut self, line: &Line) {
        if let Some(item) = FeedItem::from_line(line) {
            if self.feed.len() == FEED {
                self.feed.pop_back();
            }
            self.feed.push_front(item);
        }
    }

    pub fn set_message(&mut self, ok: bool, text: impl Into<String>) {
        self.message = Some((ok, text.into()));
    }

    /// Filters and sorts the rows (on new data and on sort or filter changes, never per frame).
    fn rebuild(&mut self) {
        let f = self.filter.to_lowercase();
        let snap = &self.snapshot;
        let mut rows: Vec<usize> = (0..snap.profiles.len())
            .filter(|&i| {
                let p = &snap.profiles[i];
                f.is_empty()
                    || p.exe.to_lowercase().contains(&f)
                    || p.profile.contains(&f)
                    || p.state.as_str().contains(&f)
            })
            .collect();
        let ps = &snap.profiles;
        match self.profile_sort {
            ProfileSort::Rate => rows.sort_by(|&a, &b| {
                ps[b]
                    .calls_per_sec
                    .total_cmp(&ps[a].calls_per_sec)
                    .then(ps[b].calls.cmp(&ps[a].calls))
            }),
            ProfileSort::Calls => rows.sort_by_key(|&i| std::cmp::Reverse(ps[i].calls)),
            ProfileSort::Anomalies => rows.sort_by_key(|&i| std::cmp::Reverse(ps[i].anomalies)),
            ProfileSort::State => rows.sort_by_key(|&i| {
                let rank = match ps[i].state {
                    State::Normal => 0,
                    State::Frozen => 1,
                    State::Training => 2,
                };
                (rank, std::cmp::Reverse(ps[i].calls))
            }),
            ProfileSort::Pairs => rows.sort_by_key(|&i| std::cmp::Reverse(ps[i].pairs)),
            ProfileSort::Exe => rows.sort_by(|&a, &b| ps[a].exe.cmp(&ps[b].exe)),
        }
        self.profile_rows = rows;

        let mut rows: Vec<usize> = (0..snap.processes.len())
            .filter(|&i| {
                let p = &snap.processes[i];
                f.is_empty()
                    || p.comm.to_lowercase().contains(&f)
                    || p.exe.to_lowercase().contains(&f)
                    || p.pid.to_string() == f
            })
            .collect();
        let ps = &snap.processes;
        match self.process_sort {
            ProcessSort::Calls => rows.sort_by_key(|&i| std::cmp::Reverse(ps[i].calls)),
            ProcessSort::Lfc => rows
                .sort_by_key(|&i| (std::cmp::Reverse(ps[i].lfc), std::cmp::Reverse(ps[i].calls))),
            ProcessSort::Pid => rows.sort_by_key(|&i| ps[i].pid),
            ProcessSort::Comm => rows.sort_by(|&a, &b| ps[a].comm.cmp(&ps[b].comm)),
        }
        self.process_rows = rows;
        self.profile_sel = self
            .profile_sel
            .min(self.profile_rows.len().saturating_sub(1));
        self.process_sel = self
            .process_sel
            .min(self.process_rows.len().saturating_sub(1));
    }

    /// Rows in the current list (or the heat map in the detail view).
    fn len(&self) -> usize {
        if self.detail.is_some() {
            return self.detail_data.as_ref().map_or(0, |d| heat_rows(d).len());
        }
        match self.view {
            View::Profiles => self.profile_rows.len(),
            View::Processes => self.process_rows.len(),
        }
    }

    fn sel_mut(&mut self) -> &mut usize {
        if self.detail.is_some() {
            return &mut self.detail_sel;
        }
        match self.view {
            View::Profiles => &mut self.profile_sel,
            View::Processes => &mut self.process_sel,
        }
    }

    fn move_by(&mut self, delta: isize) {
        let max = self.len().saturating_sub(1);
        let sel = self.sel_mut();
        *sel = sel.saturating_add_signed(delta).min(max);
    }

    /// The profile the command keys act on: the open one, or the selected row's.
    fn target(&self) -> Option<(String, String)> {
        if let Some(key) = &self.detail {
            let name = self.detail_data.as_ref().map_or(key.clone(), |d| {
                crate::control::print::name(&d.row.exe, key).into()
            });
            return Some((key.clone(), name));
        }
        match self.view {
            View::Profiles => self.selected_profile().map(|p| {
                (
                    p.profile.clone(),
                    crate::control::print::name(&p.exe, &p.profile).to_string(),
                )
            }),
            View::Processes => self
                .selected_process()
                .filter(|p| !p.profile.is_empty())
                .map(|p| {
                    (
                        p.profile.clone(),
                        crate::control::print::name(&p.exe, &p.profile).to_string(),
                    )
                }),
        }
    }

    /// Applies one action; returns work for the collector, if any.
    pub fn apply(&mut self, action: Action) -> Option<Ask> {
        match action {
            Action::Quit => self.quit = true,
            Action::Back => match self.mode {
                Mode::Normal if self.detail.is_some() => {
                    self.detail = None;
                    self.detail_data = None;
                    return Some(Ask::Detail(None));
                }
                Mode::Normal if !self.filter.is_empty() => {
                    self.filter.clear();
                    self.rebuild();
                }
                Mode::Normal => self.quit = true,
                Mode::Filter => {
                    self.filter.clear();
                    self.mode = Mode::Normal;
                    self.rebuild();
                }
                _ => self.mode = Mode::Normal,
            },
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(PAGE as isize)),
            Action::PageDown => self.move_by(PAGE as isize),
            Action::First => *self.sel_mut() = 0,
            Action::Last => {
                let last = self.len().saturating_sub(1);
                *self.sel_mut() = last;
            }
            Action::SwitchView => {
                self.view = match self.view {
                    View::Profiles => View::Processes,
                    View::Processes => View::Profiles,
                };
                if self.detail.take().is_some() {
                    self.detail_data = None;
                    return Some(Ask::Detail(None));
                }
            }
            Action::Sort => {
                match self.view {
                    View::Profiles => self.profile_sort = self.profile_sort.next(),
                    View::Processes => self.process_sort = self.process_sort.next(),
                }
                self.rebuild();
            }
            // A new filter replaces the old one, as a search does in less.
            Action::StartFilter => {
                self.filter.clear();
                self.mode = Mode::Filter;
                self.rebuild();
            }
            Action::FilterChar(c) => {
                self.filter.push(c);
                self.rebuild();
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.rebuild();
            }
            Action::FilterDone => self.mode = Mode::Normal,
            Action::Open => {
                if self.detail.is_none() {
                    if let Some((key, _)) = self.target() {
                        self.detail = Some(key.clone());
                        self.detail_data = None;
                        self.detail_sel = 0;
                        return Some(Ask::Detail(Some(key)));
                    }
                }
            }
            Action::Command(op) => {
                let Some((key, name)) = self.target() else {
                    self.set_message(false, "select a profile first");
                    return None;
                };
                if op == Op::Freeze {
                    return Some(Ask::Command(op, Target::Profile(key)));
                }
                self.mode = Mode::Confirm { op, key, name };
            }
            Action::Confirm => {
                if let Mode::Confirm { op, key, .. } =
                    std::mem::replace(&mut self.mode, Mode::Normal)
                {
                    return Some(Ask::Command(op, Target::Profile(key)));
                }
            }
            Action::Cancel => self.mode = Mode::Normal,
            Action::Help => {
                self.mode = if self.mode == Mode::Help {
                    Mode::Normal
                } else {
                    Mode::Help
                }
            }
        }
        None
    }
}

/// The heat map's rows: current calls that have pairs, in number order, with their pairs.
pub fn heat_rows(d: &ProfileDetail) -> Vec<(u16, &str)> {
    let mut rows: Vec<(u16, &str)> = active_pairs(d)
        .iter()
        .map(|p| (p.current_nr, p.current.as_str()))
        .collect();
    rows.dedup();
    rows
}

/// The pairs the profile is judged by: testing data once normal, training data before.
pub fn active_pairs(d: &ProfileDetail) -> &[crate::control::protocol::Pair] {
    if d.row.state == State::Normal {
        &d.test
    } else {
        &d.train
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ProfileRow;

    pub fn profile(exe: &str, key: &str, calls: u64, state: State) -> ProfileRow {
        ProfileRow {
            exe: exe.into(),
            sha256: None,
            script_sha256: None,
            script: String::new(),
            profile: key.into(),
            state,
            calls,
            calls_per_sec: calls as f64 / 10.0,
            train_count: calls,
            last_mod_count: 3,
            sequences: 10,
            anomalies: 0,
            pairs: 12,
            normal_in_secs: None,
            processes: 1,
            pending: 0,
            progress: String::new(),
        }
    }

    fn app() -> App {
        let mut app = App::new("test");
        app.set_snapshot(Snapshot {
            profiles: vec![
                profile("/usr/bin/ls", "1:1", 10, State::Training),
                profile("/usr/bin/cat", "1:2", 30, State::Normal),
            ],
            ..Snapshot::default()
        });
        app
    }

    #[test]
    fn empty_app_moves_and_commands_without_panicking() {
        let mut app = App::new("x");
        for a in [
            Action::Up,
            Action::Down,
            Action::PageDown,
            Action::Last,
            Action::Open,
            Action::Sort,
            Action::SwitchView,
            Action::Command(Op::Normalize),
        ] {
            assert_eq!(app.apply(a), None);
        }
        assert!(app.message.is_some());
    }

    #[test]
    fn normalize_asks_for_confirmation_then_sends_the_command() {
        let mut app = app();
        // Sorted by calls/s: cat first.
        assert_eq!(app.selected_profile().unwrap().exe, "/usr/bin/cat");
        assert_eq!(app.apply(Action::Command(Op::Normalize)), None);
        assert!(matches!(
            app.mode,
            Mode::Confirm {
                op: Op::Normalize,
                ..
            }
        ));
        assert_eq!(
            app.apply(Action::Confirm),
            Some(Ask::Command(Op::Normalize, Target::Profile("1:2".into())))
        );
        assert_eq!(app.mode, Mode::Normal);
        app.apply(Action::Command(Op::Reset));
        assert_eq!(app.apply(Action::Cancel), None);
        assert_eq!(app.mode, Mode::Normal);
        // Freeze is not destructive: no confirmation.
        assert_eq!(
            app.apply(Action::Command(Op::Freeze)),
            Some(Ask::Command(Op::Freeze, Target::Profile("1:2".into())))
        );
    }

    #[test]
    fn selection_follows_the_profile_across_refreshes_and_filters() {
        let mut app = app();
        app.apply(Action::Down);
        assert_eq!(app.selected_profile().unwrap().exe, "/usr/bin/ls");
        let mut snap = app.snapshot.clone();
        snap.profiles[0].calls_per_sec = 1000.0; // ls now sorts first
        app.set_snapshot(snap);
        assert_eq!(app.selected_profile().unwrap().exe, "/usr/bin/ls");
        app.apply(Action::StartFilter);
        for c in "cat".chars() {
            app.apply(Action::FilterChar(c));
        }
        app.apply(Action::FilterDone);
        assert_eq!(app.profile_rows.len(), 1);
        assert_eq!(app.selected_profile().unwrap().exe, "/usr/bin/cat");
        app.apply(Action::Back);
        assert_eq!(app.profile_rows.len(), 2);
        assert!(!app.quit);
        app.apply(Action::Back);
        assert!(app.quit);
    }

    #[test]
    fn enter_opens_the_detail_and_esc_closes_it() {
        let mut app = app();
        assert_eq!(
            app.apply(Action::Open),
            Some(Ask::Detail(Some("1:2".into())))
        );
        assert_eq!(app.apply(Action::Back), Some(Ask::Detail(None)));
        assert!(!app.quit);
    }

    /// A line as the monitor writes it.
    fn line(json: &str) -> Line {
        Line::parse(json).unwrap_or_else(|| panic!("not an event line: {json}"))
    }

    const PROC: &str = r#""pid":9,"tid":9,"ppid":1,"uid":0,"comm":"a","exe":"/tmp/a","profile":"1:2","profile_state":"normal""#;

    #[test]
    fn the_feed_shows_incidents_with_their_calls() {
        let item = FeedItem::from_line(&line(&format!(
            r#"{{"time":"2026-11-23T22:17:14.2Z","event":"incident","host":"h",{PROC},"first":"2026-11-23T22:17:02Z","last":"2026-11-23T22:17:12Z","reason":"max_duration","anomalous_calls":229238,"max_lfc":128,"syscalls":{{"read":4,"write":229230,"exit_group":4}},"first_sequence":["read"],"anomaly_lines":5,"anomaly_lines_suppressed":229233,"profile_anomalies":3}}"#
        )))
        .expect("incidents show in the feed");
        assert_eq!(item.kind, "incident");
        assert_eq!(item.time, "22:17:14");
        assert_eq!(
            item.text,
            "write,exit_group,read pid 9 a /tmp/a  229238 calls max LFC 128 (max_duration)"
        );
    }

    #[test]
    fn the_feed_shows_anomalies_with_names() {
        let mut app = App::new("x");
        app.push_event(&line(
            r#"{"time":"2026-11-23T22:17:14.218516247Z","event":"anomaly","host":"h","pid":7,"tid":7,"ppid":1,"uid":0,"comm":"a","exe":"/tmp/a","profile":"1:2","profile_state":"normal","syscall":{"nr":1,"name":"write"},"misses":6,"sequence":["munmap","write"],"lfc":1,"profile_anomalies":1}"#,
        ));
        app.push_event(&line(&format!(
            r#"{{"time":"2026-11-23T22:17:15Z","event":"new_sequence","host":"h",{PROC},"sequence":["read"]}}"#
        )));
        let delay = FeedItem::from_line(&line(&format!(
            r#"{{"time":"2026-11-23T22:17:14.2Z","event":"delay","host":"h",{PROC},"lfc":3,"delay_ms":8}}"#
        )))
        .expect("responses show in the feed");
        assert_eq!(delay.text, "pid 9 a /tmp/a delayed 8 ms (LFC 3)");
        let denied = FeedItem::from_line(&line(&format!(
            r#"{{"time":"t","event":"execve_denied","host":"h",{PROC},"lfc":14,"filename":"/bin/sh","killed":false}}"#
        )))
        .unwrap();
        assert_eq!(
            denied.text,
            "pid 9 a /tmp/a denied execve of /bin/sh (LFC 14)"
        );
        assert_eq!(denied.time, "--:--:--");
        let set = FeedItem::from_line(&line(
            r#"{"time":"t","event":"command","host":"h","peer_uid":0,"peer_pid":5,"command":"set","setting":"anomaly_limit","value":"5","result":"ok"}"#,
        ))
        .unwrap();
        assert_eq!(set.text, "set anomaly_limit 5 by uid 0 pid 5: ok");
        let lost = FeedItem::from_line(&line(
            r#"{"time":"t","event":"events_lost","host":"h","lost":{"anomaly":3},"failed":{}}"#,
        ))
        .unwrap();
        assert_eq!(
            lost.text,
            r#"the kernel lost events {"anomaly":3} failed {}"#
        );
        assert_eq!(app.feed.len(), 1);
        assert_eq!(app.feed[0].time, "22:17:14");
        assert!(
            app.feed[0].text.starts_with("write"),
            "{}",
            app.feed[0].text
        );
        assert!(app.feed[0].text.contains("[munmap write]"));
    }
}
