//! Kernel events: ring-buffer records decoded into a typed [`Event`].

use crate::bpf::{types, EVENT_KINDS};
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
    n
};

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub tgid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    /// Profile slot in the kernel table.
    pub slot: u32,
    /// CLOCK_TAI nanoseconds.
    pub time: u64,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ProfileCreated {
        origin: Origin,
        key: ProfileKey,
        /// What exec was asked to run, as given; empty for processes adopted at start.
        filename: String,
    },
    Anomaly {
        origin: Origin,
        /// Oldest first; the last entry is the anomalous call.
        window: [u16; crate::model::WINDOW],
        misses: u16,
        lfc: u32,
        profile_anomalies: u64,
        task_count: u64,
    },
    NormalStarted {
        origin: Origin,
        before: Counters,
    },
    NormalStopped {
        origin: Origin,
        counters: Counters,
        reason: StopReason,
    },
    TolerizeLimit {
        origin: Origin,
        lfc: u32,
        counters: Counters,
    },
    NewSequence {
        origin: Origin,
        window: [u16; crate::model::WINDOW],
        counters: Counters,
    },
    /// The kernel stopped the task; the monitor must resume it after `delay_ms`.
    Delay {
        origin: Origin,
        delay_ms: u32,
        lfc: u32,
    },
    /// An execve refused (and the task killed, with `killed`) because its LFC was too high.
    ExecveDenied {
        origin: Origin,
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
    pub fn origin(&self) -> &Origin {
        match self {
            Event::ProfileCreated { origin, .. }
            | Event::Anomaly { origin, .. }
            | Event::NormalStarted { origin, .. }
            | Event::NormalStopped { origin, .. }
            | Event::TolerizeLimit { origin, .. }
            | Event::NewSequence { origin, .. }
            | Event::Delay { origin, .. }
            | Event::ExecveDenied { origin, .. } => origin,
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
    let comm: Vec<u8> = h.comm.iter().map(|&c| c as u8).collect();
    Origin {
        tgid: h.tgid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        comm: c_str(&comm),
        slot: h.profile,
        time: h.time,
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

pub fn decode(data: &[u8]) -> Result<Event, DecodeError> {
    let h: types::ev_header = read(0, data).map_err(|_| DecodeError::Short(data.len()))?;
    Ok(match Kind(h.kind) {
        Kind::EV_PROFILE_CREATED => {
            let e: types::ev_profile_created = read(h.kind, data)?;
            let name: Vec<u8> = e.filename.iter().map(|&c| c as u8).collect();
            Event::ProfileCreated {
                origin: origin(&e.h),
                key: ProfileKey {
                    kdev: e.key.dev,
                    ino: e.key.ino,
                },
                filename: c_str(&name),
            }
        }
        Kind::EV_ANOMALY => {
            let e: types::ev_anomaly = read(h.kind, data)?;
            Event::Anomaly {
                origin: origin(&e.h),
                window: e.window,
                misses: e.misses,
                lfc: e.lfc,
                profile_anomalies: e.profile_anomalies,
                task_count: e.task_count,
            }
        }
        k @ (Kind::EV_NORMAL_STARTED
        | Kind::EV_NORMAL_STOPPED
        | Kind::EV_TOLERIZE_LIMIT
        | Kind::EV_NEW_SEQUENCE) => {
            let e: types::ev_state = read(h.kind, data)?;
            let o = origin(&e.h);
            match k {
                Kind::EV_NORMAL_STARTED => Event::NormalStarted {
                    origin: o,
                    before: counters(&e),
                },
                Kind::EV_NORMAL_STOPPED => Event::NormalStopped {
                    origin: o,
                    counters: counters(&e),
                    reason: StopReason::from_raw(e.reason),
                },
                Kind::EV_TOLERIZE_LIMIT => Event::TolerizeLimit {
                    origin: o,
                    lfc: e.lfc,
                    counters: counters(&e),
                },
                _ => Event::NewSequence {
                    origin: o,
                    window: e.window,
                    counters: counters(&e),
                },
            }
        }
        Kind::EV_DELAY => {
            let e: types::ev_delay = read(h.kind, data)?;
            Event::Delay {
                origin: origin(&e.h),
                delay_ms: e.delay_ms,
                lfc: e.lfc,
            }
        }
        Kind::EV_EXECVE_DENIED => {
            let e: types::ev_execve_denied = read(h.kind, data)?;
            let name: Vec<u8> = e.filename.iter().map(|&c| c as u8).collect();
            Event::ExecveDenied {
                origin: origin(&e.h),
                lfc: e.lfc,
                killed: e.killed != 0,
                filename: c_str(&name),
            }
        }
        other => return Err(DecodeError::UnknownKind(other.0)),
    })
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
        }
    }

    fn bytes<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: the record types are plain C data.
        unsafe { plain::as_bytes(v) }.to_vec()
    }

    #[test]
    fn decodes_an_anomaly_with_its_window() {
        let e = types::ev_anomaly {
            h: header(2),
            window: [5, 12, 12, 1, 1, 1, 1, 1, 1],
            misses: 5,
            lfc: 1,
            profile_anomalies: 3,
            task_count: 77,
            ..Default::default()
        };
        let ev = decode(&bytes(&e)).unwrap();
        let Event::Anomaly {
            origin,
            window,
            misses,
            lfc,
            profile_anomalies,
            task_count,
        } = ev
        else {
            panic!("decoded {ev:?}");
        };
        assert_eq!(origin.comm, "anomaly");
        assert_eq!(
            (
                origin.tgid,
                origin.tid,
                origin.ppid,
                origin.uid,
                origin.slot
            ),
            (100, 101, 1, 1000, 7)
        );
        assert_eq!(window, [5, 12, 12, 1, 1, 1, 1, 1, 1]);
        assert_eq!((misses, lfc, profile_anomalies, task_count), (5, 1, 3, 77));
    }

    #[test]
    fn decodes_profile_creation_with_path() {
        let mut e = types::ev_profile_created {
            h: header(1),
            ..Default::default()
        };
        e.key = types::profile_key {
            dev: (254 << 20) | 1,
            ino: 99,
        };
        for (d, s) in e.filename.iter_mut().zip(b"/usr/bin/ls\0junk") {
            *d = *s as _;
        }
        match decode(&bytes(&e)).unwrap() {
            Event::ProfileCreated { key, filename, .. } => {
                assert_eq!(
                    key,
                    ProfileKey {
                        kdev: (254 << 20) | 1,
                        ino: 99
                    }
                );
                assert_eq!(filename, "/usr/bin/ls");
            }
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn decodes_state_events_by_kind() {
        let mut e = types::ev_state {
            h: header(4),
            reason: 1,
            count: 9,
            anomalies: 31,
            ..Default::default()
        };
        match decode(&bytes(&e)).unwrap() {
            Event::NormalStopped {
                reason, counters, ..
            } => {
                assert_eq!(reason, StopReason::AnomalyLimit);
                assert_eq!((counters.count, counters.anomalies), (9, 31));
            }
            other => panic!("decoded {other:?}"),
        }
        e.h.kind = 5;
        e.lfc = 13;
        assert!(matches!(
            decode(&bytes(&e)).unwrap(),
            Event::TolerizeLimit { lfc: 13, .. }
        ));
        e.h.kind = 3;
        assert!(matches!(
            decode(&bytes(&e)).unwrap(),
            Event::NormalStarted { .. }
        ));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(decode(&[0u8; 4]), Err(DecodeError::Short(4)));
        let h = header(99);
        assert_eq!(decode(&bytes(&h)), Err(DecodeError::UnknownKind(99)));
        let h = header(2);
        assert!(matches!(
            decode(&bytes(&h)),
            Err(DecodeError::Truncated { kind: 2, .. })
        ));
    }
}
