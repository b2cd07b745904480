//! The control protocol: what clients ask a running monitor and what it answers.
//!
//! A client connects to `RUN_DIR/control.sock`, writes one [`Request`] as a JSON object on one
//! line, and reads one [`Reply`] (`{"Ok": …}` or `{"Err": "one sentence"}`) on one line. Then
//! the connection closes, except after [`Request::EventStream`]: its `Ok` reply is followed by
//! the monitor's JSON-lines events (the same lines as the event log, starting with the most
//! recent anomalies it remembers), one per line, until either side hangs up. A subscriber that
//! reads too slowly is disconnected; the monitor never waits for a client.

use serde::{Deserialize, Serialize};

use crate::profile::State;

/// Everything a client can ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Monitoring state, totals, rates, losses and settings.
    Status,
    /// Traced processes (thread-group leaders, with their threads summed) or every thread.
    Processes { threads: bool },
    /// Every profile.
    Profiles,
    /// One profile with its lookahead pairs.
    Profile { target: Target },
    /// An operator command on one profile.
    Command { op: Op, target: Target },
    /// Change one setting while the monitor runs.
    Set { setting: String, value: String },
    /// Write every profile to disk now.
    Save,
    /// A bundle of the profiles named (every profile when none is).
    Export { targets: Vec<String> },
    /// Import bundles: their text, the names they were read from (for messages), and how
    /// states combine.
    Import {
        bundles: Vec<String>,
        names: Vec<String>,
        how: crate::bundle::ImportAs,
    },
    /// Status, profiles and processes in one reply (the dashboard's refresh).
    Snapshot { threads: bool },
    /// Turn this connection into a stream of events.
    EventStream,
    /// Always answers with an error, so clients can test their error path.
    ReturnError,
}

/// Which profile a request is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// An executable's path, a unique file name among the profiles, or a `DEV:INODE` key.
    Profile(String),
    /// The profile process (or thread) PID runs under.
    Pid(u32),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Profile(p) => write!(f, "profile {p}"),
            Target::Pid(pid) => write!(f, "pid {pid}"),
        }
    }
}

/// pH's operator commands (docs/algorithm.md, "Commands").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Normalize,
    Sensitize,
    Tolerize,
    Reset,
    Freeze,
    Accept,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Normalize => "normalize",
            Op::Sensitize => "sensitize",
            Op::Tolerize => "tolerize",
            Op::Reset => "reset",
            Op::Freeze => "freeze",
            Op::Accept => "accept",
        }
    }

    /// What the command does, for confirmations and help.
    pub fn describe(self) -> &'static str {
        match self {
            Op::Normalize => "start detecting now: its training data becomes its testing data",
            Op::Sensitize => "forget its training data (keeps detecting with what it has)",
            Op::Tolerize => "stop detecting and go back to training",
            Op::Reset => "forget everything it learned",
            Op::Freeze => "freeze it now; it becomes normal after normal_wait",
            Op::Accept => "make what it learned while normal (its pending pairs) normal behaviour",
        }
    }

    pub fn kernel(self) -> crate::bpf::Command {
        use crate::bpf::Command;
        match self {
            Op::Normalize => Command::Normalize,
            Op::Sensitize => Command::Sensitize,
            Op::Tolerize => Command::Tolerize,
            Op::Reset => Command::Reset,
            Op::Freeze => Command::Freeze,
            Op::Accept => Command::Accept,
        }
    }
}

pub type Reply = Result<Response, String>;

/// Parses one request line as the monitor receives it, or says in one sentence why not.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim_end()).map_err(|e| {
        // serde quotes what it did not understand; a control character in it (a newline, an
        // escape sequence) must not reach the client's terminal as such.
        let e: String = e
            .to_string()
            .chars()
            .flat_map(|c| {
                let shown: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                shown
            })
            .collect();
        format!(
            "the monitor did not understand the request ({e}); are the client and the monitor the same version?"
        )
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Processes(Vec<ProcessRow>),
    Profiles(Vec<ProfileRow>),
    Profile(ProfileDetail),
    /// A command ran; the profile as it is now.
    Done {
        op: Op,
        profile: ProfileRow,
    },
    Settings(SettingsView),
    Saved {
        profiles: usize,
    },
    /// An exported bundle's text, and the profiles left out for want of a content identity.
    Bundle {
        bundle: String,
        skipped: Vec<String>,
    },
    /// What an import did with each profile.
    Imported(Vec<crate::fleet::Outcome>),
    Snapshot(Box<Snapshot>),
    /// Events follow, one per line.
    Streaming,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    pub training: usize,
    pub frozen: usize,
    pub normal: usize,
}

impl StateCounts {
    pub fn total(&self) -> usize {
        self.training + self.frozen + self.normal
    }

    pub fn add(&mut self, s: State) {
        match s {
            State::Training => self.training += 1,
            State::Frozen => self.frozen += 1,
            State::Normal => self.normal += 1,
        }
    }
}

/// What was lost since the monitor started (design habit 4: count every loss).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Losses {
    /// Kernel events that did not fit in the ring buffer.
    pub events: u64,
    pub rows_full: u64,
    pub profiles_full: u64,
    /// Execs left untraced because a non-root user had used its quota of profiles.
    #[serde(default)]
    pub quota_refused: u64,
    pub tasks_failed: u64,
    /// Event-stream clients disconnected because they read too slowly.
    pub subscribers_dropped: u64,
}

impl Losses {
    pub fn total(&self) -> u64 {
        self.events + self.rows_full + self.profiles_full + self.quota_refused + self.tasks_failed
    }
}

/// The tunables, as `ebpfh set` names them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsView {
    pub monitoring: bool,
    pub normal_wait: String,
    pub normal_factor: u32,
    pub normal_factor_den: u32,
    pub anomaly_limit: u32,
    pub tolerize_limit: u32,
    pub log_sequences: bool,
}

/// One second of activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub calls_per_sec: f64,
    pub anomalies_per_sec: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub monitoring: bool,
    pub state_dir: String,
    /// Where JSON lines go (`-` is the monitor's standard output), if anywhere.
    pub log: Option<String>,
    pub profiles: StateCounts,
    pub processes: usize,
    pub threads: usize,
    pub calls_per_sec: f64,
    pub anomalies_per_sec: f64,
    /// Anomalous calls since the monitor started (with or without their own line).
    pub anomalies: u64,
    /// Incidents (bursts of anomalies in one task) that were alarms, since the monitor started.
    #[serde(default)]
    pub incidents: u64,
    /// Incidents that were not alarms (small or repeated novelty), since the monitor started.
    #[serde(default)]
    pub quiet_incidents: u64,
    /// The latest incidents, oldest first.
    #[serde(default)]
    pub recent_incidents: Vec<IncidentSummary>,
    pub losses: Losses,
    pub profiles_used: u32,
    pub profiles_max: u32,
    pub rows_used: u32,
    pub rows_max: u32,
    pub settings: SettingsView,
    /// Active responses (`delay`, `execve_abort`); a requested one the kernel cannot run is
    /// listed as unavailable.
    #[serde(default)]
    pub responses: Vec<String>,
    /// The last minutes, one sample per second, oldest first.
    pub history: Vec<Sample>,
    /// Executables waiting to be hashed for their content identity.
    #[serde(default)]
    pub hashing: Hashing,
}

/// The executables the monitor hashes off its event loop (see `src/hasher.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashing {
    /// Profiles whose digest is being computed or waits for room in the queue.
    pub waiting: usize,
    /// `profile_created` lines written without `sha256` because the queue was full.
    pub deferred: u64,
    /// `profile_created` lines written without `sha256` because hashing took too long.
    pub late: u64,
}

/// One incident, as `ebpfh status` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSummary {
    /// Time of its last anomalous call (RFC 3339).
    pub last: String,
    pub pid: u32,
    pub tid: u32,
    pub exe: String,
    pub profile: String,
    pub reason: String,
    pub anomalous_calls: u64,
    pub max_lfc: u32,
    /// Its anomalous calls by name, the most frequent first.
    pub syscalls: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRow {
    pub pid: u32,
    /// Equal to `pid` in the per-process list.
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    /// Threads summed into this row (1 per thread in the per-thread list).
    pub threads: u32,
    pub exe: String,
    /// A script profile's script, run by `exe`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub script: String,
    pub profile: String,
    pub state: Option<State>,
    /// Anomalies among the last 128 calls (the highest of the process's threads).
    pub lfc: u32,
    pub lfc_max: u32,
    pub calls: u64,
    /// The cgroup v2 path (of the leader, in the per-process list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The container that cgroup belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    pub exe: String,
    /// SHA-256 of the executable's bytes, once the monitor has read them.
    #[serde(default)]
    pub sha256: Option<crate::identity::Digest>,
    /// SHA-256 of the script, for a per-script profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_sha256: Option<crate::identity::Digest>,
    /// A script profile's script, run by `exe`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub script: String,
    pub profile: String,
    pub state: State,
    pub calls: u64,
    pub calls_per_sec: f64,
    pub train_count: u64,
    /// Calls since the training data last changed.
    pub last_mod_count: u64,
    pub sequences: u64,
    pub anomalies: u64,
    pub pairs: u64,
    /// Seconds until a frozen profile becomes normal (0 once due), none otherwise.
    pub normal_in_secs: Option<u64>,
    pub processes: usize,
    /// Pair sets a normal profile learned that wait to be accepted (ebpfh lifecycle).
    #[serde(default)]
    pub pending: u32,
    /// What the profile waits for and roughly how long (`progress::progress`; empty when normal
    /// with nothing pending).
    #[serde(default)]
    pub progress: String,
}

/// One learned lookahead pair set: `previous` came `distances` calls before `current`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub current: String,
    pub current_nr: u16,
    pub previous: String,
    pub previous_nr: u16,
    /// Bit i-1 set = distance i (1..8).
    pub flags: u8,
}

impl Pair {
    pub fn distances(&self) -> Vec<u8> {
        (1..=8)
            .filter(|d| self.flags & (1 << (d - 1)) != 0)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileDetail {
    pub row: ProfileRow,
    /// RFC 3339 (UTC) time a frozen profile becomes normal.
    pub normal_at: Option<String>,
    /// What the profile is learning.
    pub train: Vec<Pair>,
    /// What a normal profile is tested against.
    pub test: Vec<Pair>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub status: Status,
    pub profiles: Vec<ProfileRow>,
    pub processes: Vec<ProcessRow>,
}

/// Parses a boolean setting the way people type it.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// The names `ebpfh set` accepts.
pub const SETTINGS: [&str; 7] = [
    "monitoring",
    "normal_wait",
    "normal_factor",
    "normal_factor_den",
    "anomaly_limit",
    "tolerize_limit",
    "log_sequences",
];

/// Applies `setting = value` to `s`, or says in one sentence what is wrong.
pub fn apply_setting(
    s: &mut crate::settings::Settings,
    setting: &str,
    value: &str,
) -> Result<(), String> {
    let number = |min: u32| -> Result<u32, String> {
        match value.parse::<u32>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(format!(
                "'{value}' is not a valid {setting}; give a whole number of at least {min}"
            )),
        }
    };
    let boolean = || {
        parse_bool(value)
            .ok_or_else(|| format!("'{value}' is not a valid {setting}; give on or off"))
    };
    match setting {
        "monitoring" => s.monitoring = boolean()?,
        "log_sequences" => s.log_sequences = boolean()?,
        "normal_wait" => s.normal_wait = crate::settings::parse_duration(value)?,
        "normal_factor" => s.normal_factor = number(1)?,
        "normal_factor_den" => s.normal_factor_den = number(1)?,
        "anomaly_limit" => s.anomaly_limit = number(0)?,
        "tolerize_limit" => s.tolerize_limit = number(0)?,
        _ => {
            return Err(format!(
                "'{setting}' is not a setting; the settings are {}",
                SETTINGS.join(", ")
            ))
        }
    }
    Ok(())
}

impl From<&crate::settings::Settings> for SettingsView {
    fn from(s: &crate::settings::Settings) -> Self {
        SettingsView {
            monitoring: s.monitoring,
            normal_wait: humantime::format_duration(s.normal_wait).to_string(),
            normal_factor: s.normal_factor,
            normal_factor_den: s.normal_factor_den,
            anomaly_limit: s.anomaly_limit,
            tolerize_limit: s.tolerize_limit,
            log_sequences: s.log_sequences,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn requests_are_one_line_of_json_and_round_trip() {
        let reqs = [
            Request::Status,
            Request::Processes { threads: true },
            Request::Command {
                op: Op::Normalize,
                target: Target::Profile("/usr/bin/ls".into()),
            },
            Request::Command {
                op: Op::Reset,
                target: Target::Pid(42),
            },
            Request::Set {
                setting: "monitoring".into(),
                value: "off".into(),
            },
            Request::EventStream,
        ];
        for r in reqs {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            "\"status\""
        );
    }

    /// Found by tests/fuzz.rs: an unknown request name with a newline in it came back in the
    /// error as a raw newline.
    #[test]
    fn a_bad_request_is_refused_in_one_line() {
        let e = parse_request(r#""sta\ntus\u001b[2J""#).unwrap_err();
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.contains("sta\\ntus"), "{e}");
    }

    #[test]
    fn replies_carry_errors_as_sentences() {
        let r: Reply = Err("no profile matches 'x'".into());
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"Err":"no profile matches 'x'"}"#);
        let back: Reply = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn settings_are_checked_and_applied() {
        let mut s = Settings::default();
        apply_setting(&mut s, "monitoring", "off").unwrap();
        assert!(!s.monitoring);
        apply_setting(&mut s, "normal_wait", "3s").unwrap();
        assert_eq!(s.normal_wait, std::time::Duration::from_secs(3));
        apply_setting(&mut s, "anomaly_limit", "5").unwrap();
        assert_eq!(s.anomaly_limit, 5);
        let e = apply_setting(&mut s, "normal_factor_den", "0").unwrap_err();
        assert!(e.contains("'0'"), "{e}");
        let e = apply_setting(&mut s, "colour", "blue").unwrap_err();
        assert!(e.contains("'colour' is not a setting"), "{e}");
        let e = apply_setting(&mut s, "log_sequences", "maybe").unwrap_err();
        assert!(e.contains("on or off"), "{e}");
    }
}
