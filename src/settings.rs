//! The pH tunables, with pH's defaults; the monitor copies them into the kernel's settings map.

use std::time::Duration;

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
            normal_wait: Duration::from_secs(7 * 24 * 3600),
            normal_factor: 128,
            normal_factor_den: 32,
            anomaly_limit: 30,
            tolerize_limit: 12,
            log_sequences: false,
            monitoring: true,
            record: RecordMode::Off,
            delay_factor_ms: 0,
            max_delay: Duration::from_secs(10),
            respond_listed: false,
            abort_execve: 0,
            execve_kill: false,
        }
    }
}

/// Parses durations such as `3s`, `10m`, `7d`, `1w 2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}); write it like 3s, 10m, 12h or 7d"))
}

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
    fn durations_parse_in_human_units() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("'soon'"), "{err}");
    }
}
