//! Why a profile is not normal yet and roughly when it will be, in a few words, for `ebpfh
//! profiles`, `profile show` and `top` (the rules are in docs/lifecycle.md).

use crate::control::print::duration;
use crate::model::{ACCEPT_RUNS, FREEZE_MIN_CALLS, NOVELTY_FREEZE, NOVELTY_SHIFT};
use crate::profile::{Profile, State};
use crate::settings::{wait_ns, Lifecycle, Settings};

const NS: u64 = 1_000_000_000;

/// Runs that learn nothing a training profile at `novelty` still needs before it freezes: each
/// such run takes an eighth off (as `run_end` does).
pub fn quiet_runs_to_freeze(mut novelty: u32) -> u32 {
    let mut runs = 0;
    while novelty >= NOVELTY_FREEZE {
        novelty -= novelty >> NOVELTY_SHIFT;
        runs += 1;
    }
    runs
}

/// Calls without a new pair pH's rule still needs: it freezes once `last_mod_count` exceeds
/// `train_count × (1 − den / factor)`, and each such call adds one to both.
pub fn ph_calls_to_freeze(p: &Profile, s: &Settings) -> u64 {
    let (factor, den) = (u64::from(s.normal_factor), u64::from(s.normal_factor_den));
    if den == 0 {
        // train × 0 never exceeds anything: pH never freezes on its own.
        return u64::MAX;
    }
    // Freeze when train × den > (train − last_mod) × factor; with k more quiet calls:
    // (train + k) × den > (train − last_mod) × factor.
    let need = (p.train_count - p.last_mod_count.min(p.train_count)).saturating_mul(factor);
    let have = p.train_count.saturating_mul(den);
    if have > need {
        0
    } else {
        (need - have) / den + 1
    }
}

/// One short phrase: what a profile waits for. `now` is CLOCK_TAI nanoseconds.
pub fn progress(p: &Profile, s: &Settings, now: u64) -> String {
    let wait = duration(wait_ns(s.normal_wait) / NS);
    match (p.state(), s.lifecycle) {
        (State::Frozen, _) => format!(
            "normal in {}",
            duration(p.normal_time.saturating_sub(now) / NS)
        ),
        (State::Normal, Lifecycle::Ebpfh) if p.life.pending > 0 => {
            if p.tainted() {
                format!("{} pending, after a burst: only accept", p.life.pending)
            } else {
                format!(
                    "{} pending: accept, or {} more runs showing them",
                    p.life.pending,
                    ACCEPT_RUNS.saturating_sub(p.life.repeat_runs)
                )
            }
        }
        (State::Normal, _) => String::new(),
        (State::Training, Lifecycle::Ph) => match ph_calls_to_freeze(p, s) {
            u64::MAX => "never freezes with this normal_factor".into(),
            k => format!("freezes after ~{k} calls without a new pair, normal {wait} later"),
        },
        (State::Training, Lifecycle::Ebpfh) => {
            let runs = quiet_runs_to_freeze(p.life.novelty);
            if p.count < FREEZE_MIN_CALLS {
                return format!(
                    "needs {} more calls and ~{runs} runs without a new pair",
                    FREEZE_MIN_CALLS - p.count
                );
            }
            let quiet = p
                .life
                .last_new_time
                .saturating_add(wait_ns(s.normal_wait))
                .saturating_sub(now);
            format!(
                "freezes after ~{runs} runs without a new pair or {} without one, normal {wait} later",
                duration(quiet / NS)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Life, PS_FROZEN, PS_NORMAL, PS_TAINTED};
    use std::time::Duration;

    fn settings(lifecycle: Lifecycle) -> Settings {
        Settings {
            normal_wait: Duration::from_secs(20),
            lifecycle,
            ..Settings::default()
        }
    }

    #[test]
    fn quiet_runs_count_eighths_down_to_a_sixteenth() {
        // 65536 → 57344 → 50176 → ... → 4539 after 20, 3972 after 21 (src/model/tests.rs).
        assert_eq!(quiet_runs_to_freeze(65536), 21);
        assert_eq!(quiet_runs_to_freeze(4539), 1);
        assert_eq!(quiet_runs_to_freeze(4095), 0);
    }

    #[test]
    fn phs_rule_counts_the_calls_it_still_needs() {
        let s = settings(Lifecycle::Ph);
        // train 1000, last change 600 calls ago: (1000 + k) × 32 > 400 × 128 = 51200 holds
        // from k = 601 (1601 × 32 = 51232), not at 600 (51200).
        let p = Profile {
            train_count: 1000,
            last_mod_count: 600,
            ..Profile::default()
        };
        assert_eq!(ph_calls_to_freeze(&p, &s), 601);
        assert_eq!(
            progress(&p, &s, 0),
            "freezes after ~601 calls without a new pair, normal 20s later"
        );
    }

    #[test]
    fn each_state_says_what_it_waits_for() {
        let s = settings(Lifecycle::Ebpfh);
        let now = 100 * NS;
        let mut p = Profile {
            count: 500,
            life: Life::fresh(now),
            ..Profile::default()
        };
        assert_eq!(
            progress(&p, &s, now),
            "needs 524 more calls and ~21 runs without a new pair"
        );
        p.count = 5000;
        p.life.novelty = 4539;
        p.life.last_new_time = now - 5 * NS;
        assert_eq!(
            progress(&p, &s, now),
            "freezes after ~1 runs without a new pair or 15s without one, normal 20s later"
        );
        p.state = PS_FROZEN;
        p.normal_time = now + 12 * NS;
        assert_eq!(progress(&p, &s, now), "normal in 12s");
        p.state = PS_NORMAL;
        assert_eq!(progress(&p, &s, now), "");
        p.life.pending = 9;
        p.life.repeat_runs = 3;
        assert_eq!(
            progress(&p, &s, now),
            "9 pending: accept, or 5 more runs showing them"
        );
        p.state |= PS_TAINTED;
        assert_eq!(
            progress(&p, &s, now),
            "9 pending, after a burst: only accept"
        );
    }
}
