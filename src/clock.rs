//! Time: the kernel stamps events and deadlines with CLOCK_TAI; users read UTC.
//!
//! TAI survives reboots and is comparable across save and load (unlike boot or monotonic time),
//! which is why `normal_time` uses it (docs/algorithm.md, "Time").

use chrono::{DateTime, SecondsFormat, Utc};
use nix::time::{clock_gettime, ClockId};

fn ns(clock: ClockId) -> u64 {
    let t =
        clock_gettime(clock).expect("CLOCK_TAI and CLOCK_REALTIME exist on every supported kernel");
    (t.tv_sec() as u64) * 1_000_000_000 + t.tv_nsec() as u64
}

/// Now, in CLOCK_TAI nanoseconds (the kernel's `bpf_ktime_get_tai_ns`).
pub fn tai_now() -> u64 {
    ns(ClockId::CLOCK_TAI)
}

/// Converts CLOCK_TAI readings to UTC using the offset the kernel currently applies.
#[derive(Clone, Copy, Debug)]
pub struct TaiClock {
    /// TAI minus UTC, in nanoseconds (37 s where NTP set it, often 0).
    offset_ns: i64,
}

impl TaiClock {
    pub fn new() -> Self {
        let tai = ns(ClockId::CLOCK_TAI) as i64;
        let utc = ns(ClockId::CLOCK_REALTIME) as i64;
        // Round to whole seconds: the offset is a whole number of leap seconds.
        let offset_ns = ((tai - utc) as f64 / 1e9).round() as i64 * 1_000_000_000;
        TaiClock { offset_ns }
    }

    pub fn to_utc(&self, tai_ns: u64) -> DateTime<Utc> {
        // Saturates rather than wraps: a deadline past 2262 reads as 2262, never as 1942.
        let ns = i64::try_from(tai_ns).unwrap_or(i64::MAX);
        DateTime::from_timestamp_nanos(ns.saturating_sub(self.offset_ns))
    }
}

impl Default for TaiClock {
    fn default() -> Self {
        Self::new()
    }
}

/// RFC 3339 with nanoseconds and a `Z`, the format of every `time` field.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tai_converts_to_the_current_utc() {
        let clock = TaiClock::new();
        let now = Utc::now();
        let converted = clock.to_utc(tai_now());
        let diff = (converted - now).num_milliseconds().abs();
        assert!(diff < 1000, "TAI converted to UTC is {diff} ms off");
    }

    #[test]
    fn far_deadlines_saturate_instead_of_wrapping() {
        let clock = TaiClock { offset_ns: 0 };
        let far = clock.to_utc(u64::MAX - 1);
        assert_eq!(far, DateTime::from_timestamp_nanos(i64::MAX));
    }

    #[test]
    fn rfc3339_has_nanoseconds_and_z() {
        let t = DateTime::from_timestamp_nanos(1_794_981_637_123_456_789);
        assert_eq!(rfc3339(t), "2026-11-18T06:00:37.123456789Z");
    }
}
