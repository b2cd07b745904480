//! How the subcommands print replies: plain columns for people, `--json` for scripts.

use std::fmt::Write;

use super::protocol::*;

/// The text a subcommand prints for `resp` (ends with a newline).
pub fn response(resp: &Response, json: bool) -> String {
    if json {
        let value = match resp {
            Response::Status(s) => serde_json::to_string_pretty(s),
            Response::Processes(p) => serde_json::to_string_pretty(p),
            Response::Profiles(p) => serde_json::to_string_pretty(p),
            Response::Profile(p) => serde_json::to_string_pretty(p),
            other => serde_json::to_string_pretty(other),
        };
        return value.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")) + "\n";
    }
    match resp {
        Response::Status(s) => status(s),
        Response::Processes(p) => processes(p),
        Response::Profiles(p) => profiles(p),
        Response::Profile(p) => profile(p),
        Response::Done { op, profile } => format!(
            "{} {} ({}): now {}\n",
            past(*op),
            name(&profile.exe, &profile.profile),
            profile.profile,
            profile.state
        ),
        Response::Settings(s) => settings(s, " "),
        Response::Saved { profiles } => format!("saved {profiles} profiles\n"),
        Response::Snapshot(s) => status(&s.status),
        Response::Streaming => String::new(),
        Response::Bundle { bundle, .. } => bundle.clone(),
        Response::Imported(outcomes) => imported(outcomes),
    }
}

/// One line per imported profile: what happened, to which executable, and its state now.
pub fn imported(outcomes: &[crate::fleet::Outcome]) -> String {
    let mut o = String::new();
    for x in outcomes {
        let _ = match (&x.profile, x.profile_state) {
            (Some(key), Some(state)) => {
                writeln!(o, "{:<8} {} ({key}): now {state}", x.result, x.exe)
            }
            _ => writeln!(
                o,
                "{:<8} {} (not on this host; applied when it first runs)",
                x.result, x.exe
            ),
        };
    }
    if outcomes.is_empty() {
        o.push_str("the bundles hold no profiles\n");
    }
    o
}

fn past(op: Op) -> &'static str {
    match op {
        Op::Normalize => "normalized",
        Op::Sensitize => "sensitized",
        Op::Tolerize => "tolerized",
        Op::Reset => "reset",
        Op::Freeze => "froze",
        Op::Accept => "accepted the pending pairs of",
    }
}

/// A profile's display name: its path, or its key when the path is unknown.
pub fn name<'a>(exe: &'a str, key: &'a str) -> &'a str {
    if exe.is_empty() {
        key
    } else {
        exe
    }
}

/// An executable with its script, as a command line shows them: `/usr/bin/bash /home/u/x.sh`.
pub fn with_script(exe: &str, script: &str) -> String {
    if script.is_empty() {
        exe.to_string()
    } else {
        format!("{exe} {script}")
    }
}

pub fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `3m12s`-style durations, at most two units.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// Rates with a sensible number of digits.
pub fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

pub fn settings(s: &SettingsView, sep: &str) -> String {
    let mut out = [
        format!("monitoring={}", on_off(s.monitoring)),
        format!("normal_wait={}", s.normal_wait),
        format!("normal_factor={}", s.normal_factor),
        format!("normal_factor_den={}", s.normal_factor_den),
        format!("anomaly_limit={}", s.anomaly_limit),
        format!("tolerize_limit={}", s.tolerize_limit),
        format!("log_sequences={}", on_off(s.log_sequences)),
    ]
    .join(sep);
    out.push('\n');
    out
}

fn status(s: &Status) -> String {
    let mut o = String::new();
    let l = &s.losses;
    let _ = writeln!(
        o,
        "monitor      pid {}, up {}, version {}",
        s.pid,
        duration(s.uptime_secs),
        s.version
    );
    let _ = writeln!(o, "monitoring   {}", on_off(s.monitoring));
    let responses = if s.responses.is_empty() {
        "none".to_string()
    } else {
        s.responses.join(", ")
    };
    let _ = writeln!(o, "responses    {responses}");
    let _ = writeln!(
        o,
        "profiles     {} ({} training, {} frozen, {} normal)",
        s.profiles.total(),
        s.profiles.training,
        s.profiles.frozen,
        s.profiles.normal
    );
    let _ = writeln!(o, "processes    {} ({} threads)", s.processes, s.threads);
    let _ = writeln!(o, "calls/s      {}", rate(s.calls_per_sec));
    let _ = writeln!(
        o,
        "anomalies    {} since start ({}/s)",
        s.anomalies,
        rate(s.anomalies_per_sec)
    );
    let _ = writeln!(
        o,
        "incidents    {} since start (alarms; {} more were quiet: small or repeated novelty)",
        s.incidents, s.quiet_incidents
    );
    for i in s.recent_incidents.iter().rev() {
        let _ = writeln!(
            o,
            "  {} pid {} {}: {} anomalous calls, max LFC {}, {} ({})",
            i.last.get(..19).unwrap_or(&i.last).replace('T', " "),
            i.pid,
            i.exe,
            i.anomalous_calls,
            i.max_lfc,
            i.syscalls
                .iter()
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            i.reason
        );
    }
    let _ = writeln!(
        o,
        "lost         {} events, {} rows_full, {} profiles_full, {} quota_refused, {} tasks_failed, {} slow clients dropped",
        l.events, l.rows_full, l.profiles_full, l.quota_refused, l.tasks_failed, l.subscribers_dropped
    );
    let h = &s.hashing;
    if h.waiting > 0 || h.deferred + h.late > 0 {
        let _ = writeln!(
            o,
            "hashing      {} executables waiting, {} profile_created lines without sha256 (queue full), {} (slow)",
            h.waiting, h.deferred, h.late
        );
    }
    let _ = writeln!(
        o,
        "capacity     {}/{} profiles, {}/{} rows",
        s.profiles_used, s.profiles_max, s.rows_used, s.rows_max
    );
    let _ = writeln!(o, "state dir    {}", s.state_dir);
    let _ = writeln!(
        o,
        "event log    {}",
        match s.log.as_deref() {
            Some("-") => "the monitor's standard output",
            Some(p) => p,
            None => "none",
        }
    );
    let _ = write!(o, "settings     {}", settings(&s.settings, " "));
    o
}

/// Left-aligned text columns, right-aligned numbers; the last column is never padded.
fn table(header: &[&str], numeric: &[bool], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut o = String::new();
    let line = |o: &mut String, cells: &[String]| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(cell.chars().count());
            if i == last {
                o.push_str(cell);
            } else if numeric[i] {
                let _ = write!(o, "{}{cell}  ", " ".repeat(pad));
            } else {
                let _ = write!(o, "{cell}{}  ", " ".repeat(pad));
            }
        }
        o.push('\n');
    };
    line(
        &mut o,
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    );
    for r in rows {
        line(&mut o, r);
    }
    o
}

/// A container id as `docker ps` shortens it (12 hex digits), or `-`.
pub fn short_container(id: Option<&str>) -> &str {
    id.map_or("-", |id| &id[..id.len().min(12)])
}

fn processes(rows: &[ProcessRow]) -> String {
    let threads = rows.iter().any(|r| r.tid != r.pid);
    let mut header = vec!["PID"];
    if threads {
        header.push("TID");
    }
    header.extend(["COMM", "STATE", "LFC", "CALLS", "CONTAINER", "PROFILE"]);
    let mut numeric = vec![true];
    if threads {
        numeric.push(true);
    }
    numeric.extend([false, false, true, true, false, false]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.pid.to_string()];
            if threads {
                c.push(r.tid.to_string());
            }
            c.extend([
                r.comm.clone(),
                r.state.map_or("-".into(), |s| s.to_string()),
                r.lfc.to_string(),
                r.calls.to_string(),
                short_container(r.container_id.as_deref()).to_string(),
                with_script(name(&r.exe, &r.profile), &r.script),
            ]);
            c
        })
        .collect();
    table(&header, &numeric, &cells)
}

fn profiles(rows: &[ProfileRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.state.to_string(),
                r.calls.to_string(),
                r.train_count.to_string(),
                r.last_mod_count.to_string(),
                r.anomalies.to_string(),
                r.pairs.to_string(),
                r.normal_in_secs.map_or("-".into(), duration),
                r.profile.clone(),
                with_script(name(&r.exe, "?"), &r.script),
                r.progress.clone(),
            ]
        })
        .collect();
    table(
        &[
            "STATE",
            "CALLS",
            "TRAIN",
            "LASTCHG",
            "ANOM",
            "PAIRS",
            "NORMAL-IN",
            "KEY",
            "EXE",
            "PROGRESS",
        ],
        &[
            false, true, true, true, true, true, true, false, false, false,
        ],
        &cells,
    )
}

/// Pairs grouped by current call: `write   ← brk 1,2 · read 3`.
pub fn pair_lines(pairs: &[Pair]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pairs.len() {
        let cur = pairs[i].current_nr;
        let mut parts = Vec::new();
        while i < pairs.len() && pairs[i].current_nr == cur {
            let p = &pairs[i];
            let d: Vec<String> = p.distances().iter().map(|d| d.to_string()).collect();
            parts.push(format!("{} {}", p.previous, d.join(",")));
            i += 1;
        }
        let cur_name = pairs[i - 1].current.clone();
        out.push(format!("{cur_name:<18} ← {}", parts.join(" · ")));
    }
    out
}

fn profile(p: &ProfileDetail) -> String {
    let r = &p.row;
    let mut o = String::new();
    let _ = writeln!(o, "exe            {}", name(&r.exe, "?"));
    if !r.script.is_empty() {
        let _ = writeln!(o, "script         {}", r.script);
    }
    let _ = writeln!(o, "key            {}", r.profile);
    let _ = writeln!(
        o,
        "sha256         {}",
        r.sha256
            .map_or("unknown (the file could not be read)".into(), |d| d
                .to_string())
    );
    if let Some(script) = r.script_sha256 {
        let _ = writeln!(o, "script sha256  {script}");
    }
    let _ = writeln!(o, "state          {}", r.state);
    // A frozen profile's wait has its own line below.
    if !r.progress.is_empty() && r.state != crate::profile::State::Frozen {
        let _ = writeln!(o, "progress       {}", r.progress);
    }
    if let (Some(at), Some(secs)) = (&p.normal_at, r.normal_in_secs) {
        let _ = writeln!(o, "normal at      {at} (in {})", duration(secs));
    }
    let _ = writeln!(o, "calls          {}", r.calls);
    let _ = writeln!(o, "train count    {}", r.train_count);
    let _ = writeln!(o, "last change    {} calls ago", r.last_mod_count);
    let _ = writeln!(o, "sequences      {}", r.sequences);
    let _ = writeln!(o, "anomalies      {}", r.anomalies);
    let _ = writeln!(o, "processes      {}", r.processes);
    for (title, pairs) in [("training", &p.train), ("testing", &p.test)] {
        let _ = writeln!(
            o,
            "\n{title} pairs ({}; call ← earlier call and its distances)",
            pairs
                .iter()
                .map(|p| p.flags.count_ones() as usize)
                .sum::<usize>()
        );
        for l in pair_lines(pairs) {
            let _ = writeln!(o, "  {l}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_two_units() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(192), "3m12s");
        assert_eq!(duration(7200 + 60), "2h01m");
        assert_eq!(duration(7 * 86400), "7d00h");
    }

    #[test]
    fn tables_align_numbers_right() {
        let t = table(
            &["N", "NAME"],
            &[true, false],
            &[vec!["5".into(), "a".into()], vec!["100".into(), "b".into()]],
        );
        assert_eq!(t, "  N  NAME\n  5  a\n100  b\n");
    }

    #[test]
    fn pairs_group_by_current_call() {
        let p = |cur: u16, prev: u16, flags| Pair {
            current: crate::syscalls::name(cur),
            current_nr: cur,
            previous: crate::syscalls::name(prev),
            previous_nr: prev,
            flags,
        };
        let lines = pair_lines(&[p(1, 0, 0b11), p(1, 12, 0b100), p(0, 0, 1)]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("write"), "{}", lines[0]);
        assert!(lines[0].ends_with("read 1,2 · brk 3"), "{}", lines[0]);
    }
}
