//! Events: the one [`Event`] type the model emits and the kernel's ring-buffer records decode
//! into ([`decode`], the only decoder).

use crate::bpf::{types, EVENT_KINDS};
use crate::model::WINDOW;
use crate::profile::ProfileKey;

use types::event_kind as Kind;

/// JSON names of the kernel's event kinds, indexed by `enum event_kind` (as
/// `Stats::events_lost` is); kind 0 is unused.
pub const KIND_NAMES: [&str; EVENT_KINDS] = {
    let mut n = [""; EVENT_KINDS];
    n[Kind::EV_PROFILE_CREATED.0 as usize] = "profile_created";
    n[Kind::EV_ANOMALY.0 as usize] = "anomaly";
    n[Kind::EV_NORMAL_STARTED.0 as usize] = "normal_started";
    n[Kind::EV_NORMAL_STOPPED.0 as usize] = "normal_stopped";
    n[Kind::EV_TOLERIZE_LIMIT.0 as usize] = "tolerize_limit";
    n[Kind::EV_NEW_SEQUENCE.0 as usize] = "new_sequence";
    n[Kind::EV_DELAY.0 as usize] = "delay";
    n[Kind::EV_EXECVE_DENIED.0 as usize] = "execve_denied";
    n[Kind::EV_PENDING_ACCEPTED.0 as usize] = "pending_accepted";
    n
};

/// What the kernel knows about an event that the model does not: the ring record's header
/// (and, for `profile_created`, what exec was asked to run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    /// Profile slot in the kernel table.
    pub slot: u32,
    /// CLOCK_TAI nanoseconds.
    pub time: u64,
    /// `profile_created` only: the path exec was given, as given (may be relative); empty for
    /// processes adopted at start-up and for every other kind.
    pub filename: String,
    /// The task's cgroup v2 id (0: not known); see `cgroup::Cgroups`.
    pub cgroup: u64,
    /// `profile_created` of a script profile only: the script as given to exec or to the
    /// interpreter (may be relative).
    pub script: String,
    /// `profile_created` only: the executable's absolute path as the kernel walked it at exec
    /// (empty if it could not).
    pub path: String,
    /// `profile_created` only: the working directory at exec, when `script` is relative.
    pub cwd: String,
}

/// Profile counters as they were when the event fired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub count: u64,
    pub train_count: u64,
    pub last_mod_count: u64,
    pub sequences: u64,
    pub anomalies: u64,
}

/// What the per-call algorithm reports: the model emits these, and the kernel's ring-buffer
/// records decode into them (with an [`Origin`]). `tid` is the task whose call or exec caused
/// the event, `key` its profile. `jsonl::Record::from_event` is the one mapping to a JSON line.
///
/// A new kind is a variant here, its C record and `enum event_kind` value, an arm in [`decode`]
/// and in `Record::from_event`; the compiler finds every other place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ProfileCreated {
        tid: u32,
        key: ProfileKey,
    },
    Anomaly {
        tid: u32,
        key: ProfileKey,
        /// Oldest first; the last entry is the anomalous call.
        window: [u16; WINDOW],
        /// Distances whose pair the testing data lacks.
        misses: u16,
        /// Of those, the pairs the training data lacked too: learned by this call. The others
        /// are pending (an earlier call of the profile showed them already).
        new_pairs: u16,
        /// The testing data has no pair with this call at all: the profile never made it.
        unknown: bool,
        /// The task's LFC, this call included.
        lfc: u32,
        /// The profile's anomaly count, this call included.
        profile_anomalies: u64,
        task_count: u64,
    },
    NormalStarted {
        tid: u32,
        key: ProfileKey,
        lfc: u32,
        /// Counters as they were before start_normal zeroed them.
        before: Counters,
    },
    NormalStopped {
        tid: u32,
        key: ProfileKey,
        lfc: u32,
        counters: Counters,
        reason: StopReason,
    },
    TolerizeLimit {
        tid: u32,
        key: ProfileKey,
        lfc: u32,
        /// After the training data was reset.
        counters: Counters,
    },
    NewSequence {
        tid: u32,
        key: ProfileKey,
        lfc: u32,
        window: [u16; WINDOW],
        /// After the new pairs were counted.
        counters: Counters,
    },
    /// The ebpfh lifecycle accepted a normal profile's pending pairs after runs that showed them
    /// again.
    PendingAccepted {
        tid: u32,
        key: ProfileKey,
        lfc: u32,
        /// Pair sets that became testing data.
        pending: u32,
        /// After the accept.
        counters: Counters,
    },
    /// Kernel only (the model has no responses): the kernel stopped the task, and the monitor
    /// must resume it after `delay_ms`.
    Delay {
        tid: u32,
        key: ProfileKey,
        delay_ms: u32,
        lfc: u32,
    },
    /// Kernel only: an execve refused (and the task killed, with `killed`) because its LFC was
    /// too high.
    ExecveDenied {
        tid: u32,
        key: ProfileKey,
        lfc: u32,
        killed: bool,
        filename: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    AnomalyLimit,
    Command,
    Unknown(u32),
}

impl StopReason {
    fn from_raw(r: u32) -> Self {
        match types::stop_reason(r) {
            types::stop_reason::STOP_ANOMALY_LIMIT => StopReason::AnomalyLimit,
            types::stop_reason::STOP_COMMAND => StopReason::Command,
            other => StopReason::Unknown(other.0),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::AnomalyLimit => "anomaly_limit",
            StopReason::Command => "command",
            StopReason::Unknown(_) => "unknown",
        }
    }
}

impl Event {
    /// The task that caused the event.
    pub fn tid(&self) -> u32 {
        self.subject().0
    }

    /// The profile the event is about.
    pub fn key(&self) -> ProfileKey {
        self.subject().1
    }

    fn subject(&self) -> (u32, ProfileKey) {
        match self {
            Event::ProfileCreated { tid, key }
            | Event::Anomaly { tid, key, .. }
            | Event::NormalStarted { tid, key, .. }
            | Event::NormalStopped { tid, key, .. }
            | Event::TolerizeLimit { tid, key, .. }
            | Event::NewSequence { tid, key, .. }
            | Event::PendingAccepted { tid, key, .. }
            | Event::Delay { tid, key, .. }
            | Event::ExecveDenied { tid, key, .. } => (*tid, *key),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("event record of kind {kind} has {len} bytes, expected at least {want}")]
    Truncated { kind: u32, len: usize, want: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
}

/// A C string field up to its first NUL, lossily decoded.
fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn origin(h: &types::ev_header) -> Origin {
    let comm = h.comm.map(|c| c as u8);
    Origin {
        tgid: h.tgid,
        ppid: h.ppid,
        uid: h.uid,
        comm: c_str(&comm),
        slot: h.profile,
        time: h.time,
        cgroup: h.cgroup,
        ..Origin::default()
    }
}

fn counters(e: &types::ev_state) -> Counters {
    Counters {
        count: e.count,
        train_count: e.train_count,
        last_mod_count: e.last_mod_count,
        sequences: e.sequences,
        anomalies: e.anomalies,
    }
}

/// Copies a record out of the ring buffer (whose records need not suit our alignment).
fn read<T: plain::Plain + Default>(kind: u32, data: &[u8]) -> Result<T, DecodeError> {
    let mut v = T::default();
    plain::copy_from_bytes(&mut v, data).map_err(|_| DecodeError::Truncated {
        kind,
        len: data.len(),
        want: std::mem::size_of::<T>(),
    })?;
    Ok(v)
}

/// Decodes one record of the `events` ring buffer. The records name a profile by its kernel
/// slot; `key_of` turns a slot into its key (except for `profile_created`, which carries it).
pub fn decode(
    data: &[u8],
    key_of: impl FnOnce(u32) -> ProfileKey,
) -> Result<(Event, Origin), DecodeError> {
    let h: types::ev_header = read(0, data).map_err(|_| DecodeError::Short(data.len()))?;
    let tid = h.tid;
    if Kind(h.kind) == Kind::EV_PROFILE_CREATED {
        let e: types::ev_profile_created = read(h.kind, data)?;
        let text = |field: &[std::ffi::c_char]| {
            c_str(&field.iter().map(|&c| c as u8).collect::<Vec<u8>>())
        };
        let key = ProfileKey::from(e.key);
        let origin = Origin {
            filename: text(&e.filename),
            script: text(&e.script),
            path: text(&e.path),
            cwd: text(&e.cwd),
            ..origin(&e.h)
        };
        return Ok((Event::ProfileCreated { tid, key }, origin));
    }
    let event = match Kind(h.kind) {
        Kind::EV_ANOMALY => {
            let e: types::ev_anomaly = read(h.kind, data)?;
            Event::Anomaly {
                tid,
                key: key_of(h.profile),
                window: e.window,
                misses: e.misses,
                new_pairs: e.new_pairs,
                unknown: e.unknown != 0,
                lfc: e.lfc,
                profile_anomalies: e.profile_anomalies,
                task_count: e.task_count,
            }
        }
        k @ (Kind::EV_NORMAL_STARTED
        | Kind::EV_NORMAL_STOPPED
        | Kind::EV_TOLERIZE_LIMIT
        | Kind::EV_NEW_SEQUENCE
        | Kind::EV_PENDING_ACCEPTED) => {
            let e: types::ev_state = read(h.kind, data)?;
            let key = key_of(h.profile);
            let lfc = e.lfc;
            match k {
                Kind::EV_NORMAL_STARTED => Event::NormalStarted {
                    tid,
                    key,
                    lfc,
                    before: counters(&e),
                },
                Kind::EV_NORMAL_STOPPED => Event::NormalStopped {
                    tid,
                    key,
                    lfc,
                    counters: counters(&e),
                    reason: StopReason::from_raw(e.reason),
                },
                Kind::EV_TOLERIZE_LIMIT => Event::TolerizeLimit {
                    tid,
                    key,
                    lfc,
                    counters: counters(&e),
                },
                Kind::EV_PENDING_ACCEPTED => Event::PendingAccepted {
                    tid,
                    key,
                    lfc,
                    pending: e.reason,
                    counters: counters(&e),
                },
                _ => Event::NewSequence {
                    tid,
                    key,
                    lfc,
                    window: e.window,
                    counters: counters(&e),
                },
            }
        }
        Kind::EV_DELAY => {
            let e: types::ev_delay = read(h.kind, data)?;
            Event::Delay {
                tid,
                key: key_of(h.profile),
                delay_ms: e.delay_ms,
                lfc: e.lfc,
            }
        }
        Kind::EV_EXECVE_DENIED => {
            let e: types::ev_execve_denied = read(h.kind, data)?;
            let name: Vec<u8> = e.filename.iter().map(|&c| c as u8).collect();
            Event::ExecveDenied {
                tid,
                key: key_of(h.profile),
                lfc: e.lfc,
                killed: e.killed != 0,
                filename: c_str(&name),
            }
        }
        other => return Err(DecodeError::UnknownKind(other.0)),
    };
    Ok((event, origin(&h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u32) -> types::ev_header {
        let mut comm = [0 as _; 16];
        for (d, s) in comm.iter_mut().zip(b"anomaly") {
            *d = *s as _;
        }
        types::ev_header {
            kind,
            tgid: 100,
            tid: 101,
            ppid: 1,
            uid: 1000,
            profile: 7,
            time: 42,
            comm,
            cgroup: 4242,
        }
    }

    fn bytes<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: the record types are plain C data.
        unsafe { plain::as_bytes(v) }.to_vec()
    }

    /// The key the tests' slot 7 resolves to.
    const K7: ProfileKey = ProfileKey::file(8, 7);

    fn key_of(slot: u32) -> ProfileKey {
        assert_eq!(slot, 7, "the key of the record's own slot is asked for");
        K7
    }

    fn dec(data: &[u8]) -> Result<(Event, Origin), DecodeError> {
        decode(data, key_of)
    }

    #[test]
    fn decodes_an_anomaly_with_its_window() {
        let e = types::ev_anomaly {
            h: header(2),
            window: [5, 12, 12, 1, 1, 1, 1, 1, 1],
            misses: 5,
            new_pairs: 2,
            unknown: 1,
            lfc: 1,
            profile_anomalies: 3,
            task_count: 77,
            ..Default::default()
        };
        let (ev, origin) = dec(&bytes(&e)).unwrap();
        assert_eq!(
            ev,
            Event::Anomaly {
                tid: 101,
                key: K7,
                window: [5, 12, 12, 1, 1, 1, 1, 1, 1],
                misses: 5,
                new_pairs: 2,
                unknown: true,
                lfc: 1,
                profile_anomalies: 3,
                task_count: 77,
            }
        );
        assert_eq!(
            origin,
            Origin {
                tgid: 100,
                ppid: 1,
                uid: 1000,
                comm: "anomaly".into(),
                slot: 7,
                time: 42,
                cgroup: 4242,
                ..Origin::default()
            }
        );
    }

    #[test]
    fn decodes_profile_creation_with_key_and_path() {
        let mut e = types::ev_profile_created {
            h: header(1),
            ..Default::default()
        };
        e.key = types::profile_key {
            dev: (254 << 20) | 1,
            ino: 99,
            script: 5,
        };
        for (field, text) in [
            (&mut e.filename, &b"./x.sh\0junk"[..]),
            (&mut e.script, b"./x.sh\0"),
            (&mut e.path, b"/usr/bin/dash\0"),
            (&mut e.cwd, b"/home/u\0"),
        ] {
            for (d, s) in field.iter_mut().zip(text) {
                *d = *s as _;
            }
        }
        let (ev, origin) = decode(&bytes(&e), |_| panic!("the record carries its key")).unwrap();
        let key = ProfileKey::file((254 << 20) | 1, 99).with_script(5);
        assert_eq!(ev, Event::ProfileCreated { tid: 101, key });
        assert_eq!(origin.filename, "./x.sh");
        assert_eq!(origin.script, "./x.sh");
        assert_eq!(
            (origin.path.as_str(), origin.cwd.as_str()),
            ("/usr/bin/dash", "/home/u")
        );
    }

    #[test]
    fn decodes_state_events_by_kind() {
        let mut e = types::ev_state {
            h: header(4),
            reason: 1,
            count: 9,
            anomalies: 31,
            lfc: 2,
            ..Default::default()
        };
        match dec(&bytes(&e)).unwrap().0 {
            Event::NormalStopped {
                tid,
                key,
                lfc,
                reason,
                counters,
            } => {
                assert_eq!((tid, key, lfc), (101, K7, 2));
                assert_eq!(reason, StopReason::AnomalyLimit);
                assert_eq!((counters.count, counters.anomalies), (9, 31));
            }
            other => panic!("decoded {other:?}"),
        }
        e.h.kind = 5;
        e.lfc = 13;
        assert!(matches!(
            dec(&bytes(&e)).unwrap().0,
            Event::TolerizeLimit { lfc: 13, .. }
        ));
        e.h.kind = 3;
        assert!(matches!(
            dec(&bytes(&e)).unwrap().0,
            Event::NormalStarted { lfc: 13, .. }
        ));
    }

    #[test]
    fn decodes_the_responses() {
        let d = types::ev_delay {
            h: header(7),
            delay_ms: 8,
            lfc: 3,
        };
        assert_eq!(
            dec(&bytes(&d)).unwrap().0,
            Event::Delay {
                tid: 101,
                key: K7,
                delay_ms: 8,
                lfc: 3
            }
        );
        let mut x = types::ev_execve_denied {
            h: header(8),
            lfc: 14,
            killed: 1,
            ..Default::default()
        };
        for (d, s) in x.filename.iter_mut().zip(b"/bin/sh\0") {
            *d = *s as _;
        }
        assert_eq!(
            dec(&bytes(&x)).unwrap().0,
            Event::ExecveDenied {
                tid: 101,
                key: K7,
                lfc: 14,
                killed: true,
                filename: "/bin/sh".into()
            }
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(dec(&[0u8; 4]), Err(DecodeError::Short(4)));
        let h = header(99);
        assert_eq!(dec(&bytes(&h)), Err(DecodeError::UnknownKind(99)));
        let h = header(2);
        assert!(matches!(
            dec(&bytes(&h)),
            Err(DecodeError::Truncated { kind: 2, .. })
        ));
    }
}
