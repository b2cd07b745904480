//! The pH tunables, with pH's defaults; the monitor copies them into the kernel's settings map.
//!
//! Every default is defined here once (the kernel's own initial values, `enum defaults` in
//! `bpf/ebpfh.h`, are checked against these at compile time in `src/abi.rs`), and so is every
//! unit conversion from these settings to the kernel's and the model's integers.

use std::time::Duration;

/// The defaults, used by [`Settings::default`], the command line and replay.
pub mod defaults {
    use std::time::Duration;

    /// pH's one week.
    pub const NORMAL_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);
    /// [`NORMAL_WAIT`] as the command line writes it (a test checks the two agree).
    pub const NORMAL_WAIT_TEXT: &str = "7d";
    pub const NORMAL_FACTOR: u32 = 128;
    pub const NORMAL_FACTOR_DEN: u32 = 32;
    pub const ANOMALY_LIMIT: u32 = 30;
    pub const TOLERIZE_LIMIT: u32 = 12;
    /// Longest single delay of the delay response.
    pub const MAX_DELAY: Duration = Duration::from_secs(10);
    /// [`MAX_DELAY`] as the command line writes it.
    pub const MAX_DELAY_TEXT: &str = "10s";
    /// The delay factor `--respond` alone turns on, in milliseconds.
    pub const RESPOND_DELAY_FACTOR_MS: u32 = 1;
    /// The LFC above which `--respond` alone denies execve.
    pub const RESPOND_ABORT_EXECVE: u32 = 10;
    /// The profile lifecycle (docs/lifecycle.md).
    pub const LIFECYCLE: super::Lifecycle = super::Lifecycle::Ebpfh;
    /// A task's incident ends after this long without an anomaly (see `src/incident.rs`).
    pub const INCIDENT_IDLE: Duration = Duration::from_secs(2);
    /// [`INCIDENT_IDLE`] as the command line writes it.
    pub const INCIDENT_IDLE_TEXT: &str = "2s";
    /// An incident still going after this long is closed and the next one opened, so a
    /// runaway task writes one incident line per this much time.
    pub const INCIDENT_MAX_DURATION: Duration = Duration::from_secs(10);
    /// [`INCIDENT_MAX_DURATION`] as the command line writes it.
    pub const INCIDENT_MAX_DURATION_TEXT: &str = "10s";
    /// Anomalies after which an incident is closed anyway.
    pub const INCIDENT_MAX_CALLS: u64 = 100_000;
    /// The first anomalies of an incident that keep their own `anomaly` line.
    pub const ANOMALY_LINES: u64 = 5;
}

/// A duration in the kernel's nanoseconds. Waits beyond u64 saturate at half its range, so
/// `now + wait` still cannot wrap (the kernel compares `now > normal_time`).
pub fn wait_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2)
}

/// A duration in whole milliseconds, saturating at u32 (the kernel's `max_delay_ms`).
pub fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long a profile must stay frozen before it becomes normal.
    pub normal_wait: Duration,
    pub normal_factor: u32,
    pub normal_factor_den: u32,
    /// Anomalous calls a normal profile tolerates before normal monitoring stops.
    pub anomaly_limit: u32,
    /// Locality-frame count above which a task's profile forgets its training data.
    pub tolerize_limit: u32,
    /// Emit a `new_sequence` event for every pair set learned.
    pub log_sequences: bool,
    /// Process calls at all (off = paused).
    pub monitoring: bool,
    /// Which tasks' inputs go to the `trace` ring buffer (for `ebpfh record`).
    pub record: RecordMode,
    /// pH's delay response: a task with LFC > 0 is stopped for 2^LFC x this many ms (0 = off).
    pub delay_factor_ms: u32,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// Respond only to executables given a target policy (`--respond-only`).
    pub respond_listed: bool,
    /// Deny execve to a task whose LFC exceeds this (0 = off; needs the BPF LSM).
    pub abort_execve: u32,
    /// Kill the task at such an execve instead of only denying it.
    pub execve_kill: bool,
    /// Which rules move a profile from training to normal and back.
    pub lifecycle: Lifecycle,
    /// Give an interpreter running a script file its own (interpreter, script) profile (see
    /// `crate::script`). Fixed when the kernel program is loaded.
    pub script_profiles: bool,
    /// The interpreters the kernel recognises by file name. Fixed at load, like the above.
    pub interpreters: Vec<crate::script::Interpreter>,
}

/// The profile lifecycle the kernel runs (`enum lifecycle` in `bpf/ebpfh.h`); see
/// docs/lifecycle.md.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Lifecycle {
    /// Freeze on recent novelty over ended runs; what a normal profile learns stays pending until
    /// accepted; the anomaly limit counts anomalous runs.
    #[default]
    Ebpfh,
    /// pH's rules, bit for bit: freeze on the share of calls since the last new pair, learn
    /// everything, count anomalous calls.
    Ph,
}

impl Lifecycle {
    /// The value of `settings.lifecycle` (`enum lifecycle`; src/abi.rs checks the numbers).
    pub const fn raw(self) -> u32 {
        match self {
            Lifecycle::Ebpfh => 0,
            Lifecycle::Ph => 1,
        }
    }

    /// From `settings.lifecycle` or a recording; anything unknown is pH's (what recordings
    /// made before lifecycles existed ran).
    pub fn from_raw(v: u32) -> Self {
        if v == 0 {
            Lifecycle::Ebpfh
        } else {
            Lifecycle::Ph
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Ebpfh => "ebpfh",
            Lifecycle::Ph => "ph",
        }
    }
}

/// What the kernel copies into its trace ring buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordMode {
    #[default]
    Off,
    /// Every traced task.
    All,
    /// The process trees started by process `recorder`'s children (from their exec on).
    Tree { recorder: u32 },
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            normal_wait: defaults::NORMAL_WAIT,
            normal_factor: defaults::NORMAL_FACTOR,
            normal_factor_den: defaults::NORMAL_FACTOR_DEN,
            anomaly_limit: defaults::ANOMALY_LIMIT,
            tolerize_limit: defaults::TOLERIZE_LIMIT,
            log_sequences: false,
            monitoring: true,
            record: RecordMode::Off,
            delay_factor_ms: 0,
            max_delay: defaults::MAX_DELAY,
            respond_listed: false,
            abort_execve: 0,
            execve_kill: false,
            lifecycle: defaults::LIFECYCLE,
            script_profiles: true,
            interpreters: crate::script::default_interpreters(),
        }
    }
}

/// Parses durations such as `3s`, `10m`, `7d`, `1w 2d`.
///
/// At most [`MAX_DURATION`]: a deadline is a CLOCK_TAI time in nanoseconds, and one further
/// away than about 2262 (where 64-bit nanoseconds end) would wrap into the past.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}); write it like 3s, 10m, 12h or 7d"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "'{s}' is longer than the longest duration ebpfh takes, {}",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// The longest duration any option or setting takes: 100 years.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400 + 25 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_phs() {
        let s = Settings::default();
        assert_eq!(s.normal_wait, Duration::from_secs(604_800));
        assert_eq!((s.normal_factor, s.normal_factor_den), (128, 32));
        assert_eq!((s.anomaly_limit, s.tolerize_limit), (30, 12));
    }

    #[test]
    fn default_texts_say_the_default_durations() {
        assert_eq!(
            parse_duration(defaults::NORMAL_WAIT_TEXT),
            Ok(defaults::NORMAL_WAIT)
        );
        assert_eq!(
            parse_duration(defaults::MAX_DELAY_TEXT),
            Ok(defaults::MAX_DELAY)
        );
    }

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(wait_ns(Duration::from_secs(3)), 3_000_000_000);
        assert_eq!(wait_ns(Duration::MAX), u64::MAX / 2);
        assert_eq!(millis_u32(Duration::from_millis(1500)), 1500);
        assert_eq!(millis_u32(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn durations_parse_in_human_units() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("'soon'"), "{err}");
        assert_eq!(parse_duration("100y"), Ok(MAX_DURATION));
        let err = parse_duration("500y").unwrap_err();
        assert_eq!(
            err,
            "'500y' is longer than the longest duration ebpfh takes, 100years"
        );
    }
}
