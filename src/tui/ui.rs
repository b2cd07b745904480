//! Drawing: reads `&App`, writes cells. No I/O, no locks, no sorting here.

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap,
};
use ratatui::Frame;

use super::app::{active_pairs, heat_rows, App, Mode, View};
use super::input::HELP;
use crate::control::print::{duration, name, rate};
use crate::control::protocol::Op;
use crate::profile::State;

/// Every style in one place.
mod theme {
    use ratatui::style::{Color, Modifier, Style};

    pub const TITLE: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    pub const HEADER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    pub const SELECTED: Style = Style::new().bg(Color::Blue).fg(Color::White);
    pub const DIM: Style = Style::new().fg(Color::DarkGray);
    pub const KEY: Style = Style::new().fg(Color::Black).bg(Color::Cyan);
    pub const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    pub const GOOD: Style = Style::new().fg(Color::Green);
    pub const CALLS: Style = Style::new().fg(Color::Cyan);
    pub const ANOMALIES: Style = Style::new().fg(Color::Red);
}

fn state_style(s: State) -> Style {
    match s {
        State::Normal => Style::new().fg(Color::Green),
        State::Frozen => Style::new().fg(Color::Cyan),
        State::Training => Style::new().fg(Color::Yellow),
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let [header, charts, main, feed, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(6),
        Constraint::Min(6),
        Constraint::Length(9),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, app, header);
    draw_charts(frame, app, charts);
    match (&app.detail, app.view) {
        (Some(_), _) => draw_detail(frame, app, main),
        (None, View::Profiles) => draw_profiles(frame, app, main),
        (None, View::Processes) => draw_processes(frame, app, main),
    }
    draw_feed(frame, app, feed);
    draw_footer(frame, app, footer);
    match &app.mode {
        Mode::Help => draw_help(frame, frame.area()),
        Mode::Confirm { op, name, .. } => draw_confirm(frame, frame.area(), *op, name),
        _ => {}
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot.status;
    let mon = if !app.loaded {
        Span::styled("waiting for the monitor…", theme::DIM)
    } else if s.monitoring {
        Span::styled("monitoring on", theme::GOOD)
    } else {
        Span::styled("monitoring PAUSED", theme::BAD)
    };
    let lost = s.losses.total() + s.losses.subscribers_dropped;
    let line1 = Line::from(vec![
        Span::styled(" ebpfh ", theme::TITLE),
        mon,
        Span::raw(format!(
            " · {} profiles ({} training, {} frozen, {} normal) · {} processes ({} threads)",
            s.profiles.total(),
            s.profiles.training,
            s.profiles.frozen,
            s.profiles.normal,
            s.processes,
            s.threads
        )),
    ]);
    let line2 = Line::from(vec![
        Span::raw(" "),
        Span::styled(format!("{} calls/s", rate(s.calls_per_sec)), theme::CALLS),
        Span::raw(" · "),
        Span::styled(
            format!(
                "{} anomalies ({}/s)",
                s.anomalies,
                rate(s.anomalies_per_sec)
            ),
            if s.anomalies > 0 {
                theme::ANOMALIES
            } else {
                Style::new()
            },
        ),
        Span::raw(" · "),
        Span::styled(
            format!("lost {lost}"),
            if lost > 0 { theme::BAD } else { Style::new() },
        ),
        Span::styled(
            format!(
                " · {} · up {} · normal_wait {}",
                app.source,
                duration(s.uptime_secs),
                s.settings.normal_wait
            ),
            theme::DIM,
        ),
    ]);
    frame.render_widget(Paragraph::new(vec![line1, line2]), area);
}

/// The last `width` samples of a history.
fn tail(data: &[u64], width: u16) -> &[u64] {
    let w = usize::from(width.saturating_sub(2));
    &data[data.len().saturating_sub(w)..]
}

fn draw_charts(frame: &mut Frame, app: &App, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    let calls = tail(&app.calls_history, left.width);
    let peak = calls.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(
                " system calls/s, last {} (peak {peak}) ",
                duration(calls.len() as u64)
            )))
            .data(calls)
            .style(theme::CALLS),
        left,
    );
    let anomalies = tail(&app.anomaly_history, right.width);
    let peak = anomalies.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(" anomalies/s (peak {peak}) ")))
            .data(anomalies)
            .max(peak.max(1))
            .style(theme::ANOMALIES),
        right,
    );
}

/// First visible row so that `sel` stays in a window of `height` rows.
fn offset(sel: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        sel.saturating_sub(height - 1)
    }
}

fn list_title(app: &App, what: &str, shown: usize, total: usize, sort: &str) -> Line<'static> {
    let mut spans = vec![
        Span::styled(format!(" {what} "), theme::TITLE),
        Span::raw(format!("{shown}/{total} · sorted by {sort} ")),
    ];
    if !app.filter.is_empty() || app.mode == Mode::Filter {
        spans.push(Span::styled(
            format!("· filter '{}' ", app.filter),
            theme::HEADER,
        ));
    }
    Line::from(spans)
}

fn draw_profiles(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(list_title(
        app,
        "Profiles",
        app.profile_rows.len(),
        app.snapshot.profiles.len(),
        app.profile_sort.label(),
    ));
    let sel = app.profile_sel;
    let rows = app.profile_rows.iter().enumerate().map(|(n, &i)| {
        let p = &app.snapshot.profiles[i];
        let row = Row::new(vec![
            Cell::from(p.state.as_str()).style(state_style(p.state)),
            Cell::from(rate(p.calls_per_sec)),
            Cell::from(p.calls.to_string()),
            Cell::from(p.anomalies.to_string()).style(if p.anomalies > 0 {
                theme::ANOMALIES
            } else {
                Style::new()
            }),
            Cell::from(p.pairs.to_string()),
            Cell::from(p.last_mod_count.to_string()),
            Cell::from(p.normal_in_secs.map_or("-".into(), duration)),
            Cell::from(p.processes.to_string()),
            Cell::from(name(&p.exe, &p.profile).to_string()),
        ]);
        // Styled as a row, not as TableState's highlight, so a cell's own colour shows.
        if n == sel {
            row.style(theme::SELECTED)
        } else {
            row
        }
    });
    let empty = app.profile_rows.is_empty();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new([
            "STATE",
            "CALLS/S",
            "CALLS",
            "ANOM",
            "PAIRS",
            "LASTCHG",
            "NORMAL-IN",
            "PROCS",
            "EXE",
        ])
        .style(theme::HEADER),
    )
    .block(block);
    // TableState scrolls so that the selected row stays visible.
    let mut state = TableState::new().with_selected(Some(sel));
    frame.render_stateful_widget(table, area, &mut state);
    if empty {
        draw_empty(
            frame,
            area,
            app,
            "no profiles yet: they appear as programs run",
        );
    }
}

fn draw_processes(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(list_title(
        app,
        "Processes",
        app.process_rows.len(),
        app.snapshot.processes.len(),
        app.process_sort.label(),
    ));
    let sel = app.process_sel;
    let rows = app.process_rows.iter().enumerate().map(|(n, &i)| {
        let p = &app.snapshot.processes[i];
        let row = Row::new(vec![
            Cell::from(p.pid.to_string()),
            Cell::from(p.comm.clone()),
            match p.state {
                Some(s) => Cell::from(s.as_str()).style(state_style(s)),
                None => Cell::from("-"),
            },
            Cell::from(p.lfc.to_string()).style(if p.lfc > 0 {
                theme::ANOMALIES
            } else {
                Style::new()
            }),
            Cell::from(p.calls.to_string()),
            Cell::from(p.threads.to_string()),
            Cell::from(
                crate::control::print::short_container(p.container_id.as_deref()).to_string(),
            ),
            Cell::from(name(&p.exe, &p.profile).to_string()),
        ]);
        // Styled as a row, not as TableState's highlight, so a cell's own colour shows.
        if n == sel {
            row.style(theme::SELECTED)
        } else {
            row
        }
    });
    let empty = app.process_rows.is_empty();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(4),
            Constraint::Length(10),
            Constraint::Length(4),
            Constraint::Length(12),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new([
            "PID",
            "COMM",
            "STATE",
            "LFC",
            "CALLS",
            "THR",
            "CONTAINER",
            "PROFILE",
        ])
        .style(theme::HEADER),
    )
    .block(block);
    // TableState scrolls so that the selected row stays visible.
    let mut state = TableState::new().with_selected(Some(sel));
    frame.render_stateful_widget(table, area, &mut state);
    if empty {
        draw_empty(frame, area, app, "no traced processes");
    }
}

fn draw_empty(frame: &mut Frame, area: Rect, app: &App, text: &str) {
    if area.height < 4 {
        return;
    }
    let text = if !app.loaded {
        "waiting for the monitor…"
    } else if !app.filter.is_empty() {
        "nothing matches the filter (Esc clears it)"
    } else {
        text
    };
    let inner = Rect {
        y: area.y + 2,
        height: 1,
        x: area.x + 1,
        width: area.width.saturating_sub(2),
    };
    frame.render_widget(
        Paragraph::new(text)
            .style(theme::DIM)
            .alignment(Alignment::Center),
        inner,
    );
}

/// Heat-map cell for a flag byte: more distances, darker block.
fn heat(flags: u8) -> (&'static str, Color) {
    match flags.count_ones() {
        0 => (" ", Color::Reset),
        1 => ("·", Color::Blue),
        2 => ("░", Color::Cyan),
        3 | 4 => ("▒", Color::Green),
        5 | 6 => ("▓", Color::Yellow),
        _ => ("█", Color::Red),
    }
}

fn draw_detail(frame: &mut Frame, app: &App, area: Rect) {
    let key = app.detail.as_deref().unwrap_or_default();
    let Some(d) = &app.detail_data else {
        let block = Block::bordered().title(Span::styled(format!(" Profile {key} "), theme::TITLE));
        frame.render_widget(
            Paragraph::new("loading…").style(theme::DIM).block(block),
            area,
        );
        return;
    };
    let r = &d.row;
    let title = Line::from(vec![
        Span::styled(format!(" {} ", name(&r.exe, &r.profile)), theme::TITLE),
        Span::styled(format!("{} ", r.state), state_style(r.state)),
    ]);
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [info, map] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(inner);
    let pairs = active_pairs(d);
    let table_name = if r.state == State::Normal {
        "testing"
    } else {
        "training"
    };
    let normal = match (&d.normal_at, r.normal_in_secs) {
        (Some(at), Some(secs)) => format!(" · normal in {} ({at})", duration(secs)),
        _ => String::new(),
    };
    let info_lines = vec![
        Line::from(format!(
            "key {} · calls {} ({}/s) · train count {} · last change {} calls ago · sequences {}{normal}",
            r.profile, r.calls, rate(r.calls_per_sec), r.train_count, r.last_mod_count, r.sequences
        )),
        Line::from(format!(
            "anomalies {} · processes {} · {} training pairs, {} testing pairs{}",
            r.anomalies,
            r.processes,
            d.train.iter().map(|p| p.flags.count_ones()).sum::<u32>(),
            d.test.iter().map(|p| p.flags.count_ones()).sum::<u32>(),
            if r.progress.is_empty() {
                String::new()
            } else {
                format!(" · {}", r.progress)
            }
        )),
        Line::styled(
            format!("{table_name} pairs: row = call, column = an earlier call (labels read downwards), shade = how many of the 8 distances"),
            theme::DIM,
        ),
    ];
    frame.render_widget(Paragraph::new(info_lines), info);

    let rows = heat_rows(d);
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(format!("no {table_name} pairs yet")).style(theme::DIM),
            map,
        );
        return;
    }
    // Columns: every earlier call that appears, in number order.
    let mut cols: Vec<(u16, &str)> = pairs
        .iter()
        .map(|p| (p.previous_nr, p.previous.as_str()))
        .collect();
    cols.sort_unstable();
    cols.dedup();
    const LABEL: u16 = 18;
    const COL_LABEL: usize = 4;
    let width = usize::from(map.width.saturating_sub(LABEL + 1));
    let cols = &cols[..cols.len().min(width)];
    let mut lines: Vec<Line> = Vec::new();
    for k in 0..COL_LABEL {
        let mut s = " ".repeat(usize::from(LABEL) + 1);
        for (_, n) in cols {
            s.push(n.chars().nth(k).unwrap_or(' '));
        }
        lines.push(Line::styled(s, theme::DIM));
    }
    // The selected row's pairs in words, below the map.
    let below = 2usize;
    let height = usize::from(map.height).saturating_sub(COL_LABEL + below);
    let first = offset(app.detail_sel, height);
    let mut p = 0;
    for (n, &(cur, cur_name)) in rows.iter().enumerate() {
        let mut cells = vec![0u8; cols.len()];
        while p < pairs.len() && pairs[p].current_nr == cur {
            if let Ok(c) = cols.binary_search_by_key(&pairs[p].previous_nr, |&(nr, _)| nr) {
                cells[c] = pairs[p].flags;
            }
            p += 1;
        }
        if n < first || n >= first + height {
            continue;
        }
        let label_style = if n == app.detail_sel {
            theme::SELECTED
        } else {
            Style::new()
        };
        let mut spans = vec![Span::styled(
            format!("{:>w$.w$} ", cur_name, w = usize::from(LABEL)),
            label_style,
        )];
        for f in cells {
            let (sym, color) = heat(f);
            spans.push(Span::styled(sym, Style::new().fg(color)));
        }
        lines.push(Line::from(spans));
    }
    if let Some(&(cur, cur_name)) = rows.get(app.detail_sel) {
        let words: Vec<String> = pairs
            .iter()
            .filter(|p| p.current_nr == cur)
            .map(|p| {
                let d: Vec<String> = p.distances().iter().map(u8::to_string).collect();
                format!("{} {}", p.previous, d.join(","))
            })
            .collect();
        lines.push(Line::raw(""));
        lines.push(Line::from(vec![
            Span::styled(format!("{cur_name} ← "), theme::HEADER),
            Span::raw(words.join(" · ")),
        ]));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), map);
}

fn draw_feed(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(Span::styled(" Anomalies and events ", theme::TITLE));
    let height = usize::from(area.height.saturating_sub(2));
    let lines: Vec<Line> = if app.feed.is_empty() {
        vec![Line::styled("no anomalies", theme::DIM)]
    } else {
        app.feed
            .iter()
            .take(height)
            .map(|item| {
                let style = match item.kind.as_str() {
                    "anomaly" | "normal_stopped" | "tolerize_limit" | "events_lost" => {
                        theme::ANOMALIES
                    }
                    "normal_started" => theme::GOOD,
                    _ => theme::HEADER,
                };
                Line::from(vec![
                    Span::styled(format!("{} ", item.time), theme::DIM),
                    Span::styled(format!("{:<14} ", item.kind), style),
                    Span::raw(item.text.as_str()),
                ])
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let line = match (&app.mode, &app.message) {
        (Mode::Filter, _) => Line::from(vec![
            Span::styled(" filter: ", theme::HEADER),
            Span::raw(app.filter.as_str()),
            Span::styled("█", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::styled("  Enter keep · Esc clear", theme::DIM),
        ]),
        (_, Some((ok, text))) => Line::from(vec![
            Span::raw(" "),
            Span::styled(text.as_str(), if *ok { theme::GOOD } else { theme::BAD }),
        ]),
        _ => {
            let keys: &[(&str, &str)] = if app.detail.is_some() {
                &[
                    ("Esc", "back"),
                    ("j/k", "row"),
                    ("f", "freeze"),
                    ("n", "normalize"),
                    ("z", "sensitize"),
                    ("t", "tolerize"),
                    ("r", "reset"),
                    ("a", "accept"),
                    ("?", "help"),
                    ("q", "quit"),
                ]
            } else {
                &[
                    ("Tab", "view"),
                    ("Enter", "detail"),
                    ("s", "sort"),
                    ("/", "filter"),
                    ("f", "freeze"),
                    ("n", "normalize"),
                    ("z", "sensitize"),
                    ("t", "tolerize"),
                    ("r", "reset"),
                    ("a", "accept"),
                    ("?", "help"),
                    ("q", "quit"),
                ]
            };
            let mut spans = vec![Span::raw(" ")];
            for (k, what) in keys {
                spans.push(Span::styled(format!(" {k} "), theme::KEY));
                spans.push(Span::raw(format!(" {what} ")));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<14} "), theme::HEADER),
                Span::raw(*what),
            ])
        })
        .collect();
    let popup = centered(area, 64, HELP.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(Span::styled(" ebpfh top: keys ", theme::TITLE))
                .title_bottom(Line::from(" any key closes ").right_aligned()),
        ),
        popup,
    );
}

fn draw_confirm(frame: &mut Frame, area: Rect, op: Op, name: &str) {
    let popup = centered(area, 72, 6);
    frame.render_widget(Clear, popup);
    let text = vec![
        Line::from(vec![
            Span::raw(format!("{} ", capitalize(op.as_str()))),
            Span::styled(name.to_string(), theme::HEADER),
            Span::raw("?"),
        ]),
        Line::raw(format!("It will {}.", op.describe())),
        Line::from(vec![
            Span::styled(" y ", theme::KEY),
            Span::raw(" yes   "),
            Span::styled(" any other key ", theme::KEY),
            Span::raw(" no"),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme::BAD)
                .title(" confirm ".bold()),
        ),
        popup,
    );
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{
        Pair, ProcessRow, ProfileDetail, ProfileRow, Sample, Snapshot, StateCounts, Status,
    };
    use crate::tui::app::Action;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn row(exe: &str, key: &str, state: State, calls: u64) -> ProfileRow {
        ProfileRow {
            exe: exe.into(),
            sha256: None,
            script_sha256: None,
            script: String::new(),
            profile: key.into(),
            state,
            calls,
            calls_per_sec: 12.5,
            train_count: calls,
            last_mod_count: 4,
            sequences: 9,
            anomalies: if state == State::Normal { 3 } else { 0 },
            pairs: 40,
            normal_in_secs: (state == State::Frozen).then_some(90),
            processes: 1,
            pending: 0,
            progress: String::new(),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            status: Status {
                monitoring: true,
                profiles: StateCounts {
                    training: 1,
                    frozen: 1,
                    normal: 1,
                },
                processes: 2,
                threads: 3,
                calls_per_sec: 1234.0,
                anomalies: 3,
                history: (0..100)
                    .map(|i| Sample {
                        calls_per_sec: f64::from(i * 10),
                        anomalies_per_sec: f64::from(i % 7 == 0),
                    })
                    .collect(),
                settings: crate::control::protocol::SettingsView {
                    normal_wait: "7days".into(),
                    ..Default::default()
                },
                ..Status::default()
            },
            profiles: vec![
                row("/usr/bin/anomaly-demo", "65024:11", State::Normal, 900),
                row("/usr/bin/bash", "65024:12", State::Training, 5000),
                row("", "65024:13", State::Frozen, 10),
            ],
            processes: vec![ProcessRow {
                pid: 4242,
                tid: 4242,
                ppid: 1,
                uid: 0,
                comm: "bash".into(),
                threads: 2,
                exe: "/usr/bin/bash".into(),
                script: String::new(),
                profile: "65024:12".into(),
                state: Some(State::Training),
                lfc: 2,
                lfc_max: 2,
                calls: 777,
                cgroup: Some(
                    "/system.slice/docker-4d5b9b1e8f3a2c7d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f.scope".into(),
                ),
                container_id: Some(
                    "4d5b9b1e8f3a2c7d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f".into(),
                ),
            }],
        }
    }

    fn loaded() -> App {
        let mut app = App::new("monitor pid 1");
        app.set_snapshot(snapshot());
        app.push_event(
            &crate::jsonl::Line::parse(
                r#"{"time":"2026-11-23T22:17:14.218516247Z","event":"anomaly","host":"h","pid":6487,"tid":6487,"ppid":1,"uid":0,"comm":"anomaly","exe":"/usr/bin/anomaly-demo","profile":"1:2","profile_state":"normal","syscall":{"nr":1,"name":"write"},"misses":6,"sequence":["munmap","write"],"lfc":1,"profile_anomalies":1}"#,
            )
            .expect("an event line"),
        );
        app
    }

    #[test]
    fn empty_dashboard_says_it_waits() {
        let s = screen(&App::new("in-process monitor"), 120, 30);
        assert!(s.contains("waiting for the monitor"), "{s}");
        assert!(s.contains("Profiles 0/0"), "{s}");
        assert!(s.contains("no anomalies"), "{s}");
        assert!(s.contains("Tab  view"), "{s}");
        let mut app = App::new("x");
        app.set_snapshot(Snapshot::default());
        let s = screen(&app, 120, 30);
        assert!(s.contains("no profiles yet"), "{s}");
        app.apply(Action::SwitchView);
        let s = screen(&app, 120, 30);
        assert!(s.contains("no traced processes"), "{s}");
        // Tiny terminals do not panic.
        screen(&app, 10, 5);
        screen(&app, 1, 1);
    }

    #[test]
    fn profiles_view_lists_profiles_with_state_and_feed() {
        let s = screen(&loaded(), 160, 40);
        assert!(s.contains("monitoring on"), "{s}");
        assert!(
            s.contains("3 profiles (1 training, 1 frozen, 1 normal)"),
            "{s}"
        );
        assert!(s.contains("1234 calls/s"), "{s}");
        assert!(s.contains("/usr/bin/anomaly-demo"), "{s}");
        assert!(
            s.contains("65024:13"),
            "a profile without a path shows its key: {s}"
        );
        assert!(s.contains("1m30s"), "time to normal: {s}");
        assert!(s.contains("22:17:14 anomaly        write"), "{s}");
        assert!(s.contains("[munmap write]"), "{s}");
    }

    #[test]
    fn processes_view_lists_processes() {
        let mut app = loaded();
        app.apply(Action::SwitchView);
        let s = screen(&app, 160, 40);
        assert!(s.contains("Processes 1/1"), "{s}");
        assert!(s.contains("4242"), "{s}");
        assert!(s.contains("PID"), "{s}");
        assert!(s.contains("/usr/bin/bash"), "{s}");
        assert!(s.contains("CONTAINER"), "{s}");
        assert!(s.contains(" 4d5b9b1e8f3a "), "the short container id: {s}");
    }

    #[test]
    fn detail_view_shows_counters_and_a_heat_map() {
        let mut app = loaded();
        app.apply(Action::Open);
        let s = screen(&app, 160, 40);
        assert!(s.contains("loading"), "{s}");
        let pair = |cur: u16, prev: u16, flags| Pair {
            current: crate::syscalls::name(cur),
            current_nr: cur,
            previous: crate::syscalls::name(prev),
            previous_nr: prev,
            flags,
        };
        let key = app.detail.clone().unwrap();
        let mut r = app.selected_profile().unwrap().clone();
        r.profile = key;
        r.state = State::Normal;
        r.progress = "9 pending: accept, or 5 more runs showing them".into();
        app.set_detail(ProfileDetail {
            row: r,
            normal_at: None,
            train: vec![],
            test: vec![pair(0, 1, 0xff), pair(1, 0, 1), pair(1, 1, 0b11)],
        });
        let s = screen(&app, 160, 40);
        assert!(s.contains("testing pairs"), "{s}");
        assert!(
            s.contains("testing pairs · 9 pending: accept, or 5 more runs showing them"),
            "the detail says what the profile waits for: {s}"
        );
        assert!(s.contains("read  █"), "the read row has a full cell: {s}");
        assert!(s.contains("write ·░"), "{s}");
        assert!(s.contains("read ← write 1,2,3,4,5,6,7,8"), "{s}");
    }

    #[test]
    fn help_and_confirm_are_popups() {
        let mut app = loaded();
        app.apply(Action::Help);
        let s = screen(&app, 120, 40);
        assert!(s.contains("normalize: start detecting now"), "{s}");
        app.apply(Action::Help);
        app.apply(Action::Command(Op::Normalize));
        let s = screen(&app, 120, 40);
        assert!(s.contains("Normalize /usr/bin/bash?"), "{s}");
        assert!(s.contains("training data becomes"), "{s}");
    }

    #[test]
    fn the_profile_table_scrolls_to_keep_the_selection_visible() {
        let mut snap = snapshot();
        snap.profiles = (0..60)
            .map(|n| {
                row(
                    &format!("/opt/p{n:02}"),
                    &format!("1:{n}"),
                    State::Training,
                    60 - n,
                )
            })
            .collect();
        let mut app = App::new("monitor pid 1");
        app.set_snapshot(snap);
        let top = screen(&app, 120, 30);
        assert!(
            top.contains("/opt/p00") && !top.contains("/opt/p59"),
            "{top}"
        );
        app.apply(Action::Last);
        let bottom = screen(&app, 120, 30);
        assert!(
            bottom.contains("/opt/p59") && !bottom.contains("/opt/p00"),
            "{bottom}"
        );
    }
}
