//! Invariants over random interleavings of calls, forks, signals, exits, clock ticks and
//! commands, with settings small enough that profiles freeze, turn normal and trip both limits.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::syscalls::SYM_EMPTY;

const TIDS: u32 = 4;
const KEYS: u8 = 3;

fn key(k: u8) -> ProfileKey {
    ProfileKey::file(1, u64::from(k))
}

#[derive(Clone, Debug)]
enum Op {
    Exec(u32, u8),
    Fork(u32, u32),
    Exit(u32),
    Signal(u32),
    Call(u32, i64),
    /// A stretch of a program's main loop: `n` calls cycling through 0, 1, 2, so profiles see
    /// long clean runs and freeze.
    Loop(u32, u16),
    Tick(u64),
    Monitoring(bool),
    Normalize(u8),
    Sensitize(u8),
    Tolerize(u8),
    Reset(u8),
    Freeze(u8),
    Accept(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let tid = || 0..TIDS;
    let k = || 0..KEYS;
    // A tiny alphabet so profiles saturate and turn normal; rt_sigreturn and foreign ids too.
    let id = prop_oneof![
        12 => 0i64..4,
        1 => Just(NR_RT_SIGRETURN),
        1 => any::<i64>(),
    ];
    prop_oneof![
        2 => (tid(), k()).prop_map(|(t, k)| Op::Exec(t, k)),
        1 => (tid(), tid()).prop_map(|(p, c)| Op::Fork(p, c)),
        1 => tid().prop_map(Op::Exit),
        // More pushes than returns, so stacks fill and overflow.
        20 => tid().prop_map(Op::Signal),
        60 => (tid(), id).prop_map(|(t, id)| Op::Call(t, id)),
        6 => (tid(), 1u16..200).prop_map(|(t, n)| Op::Loop(t, n)),
        4 => (0u64..30).prop_map(Op::Tick),
        1 => any::<bool>().prop_map(Op::Monitoring),
        1 => k().prop_map(Op::Normalize),
        1 => k().prop_map(Op::Sensitize),
        1 => k().prop_map(Op::Tolerize),
        1 => k().prop_map(Op::Reset),
        1 => k().prop_map(Op::Freeze),
        1 => k().prop_map(Op::Accept),
    ]
}

/// A deliberately naive signal stack, as docs/algorithm.md ("Windows and frames") describes it:
/// a list of frame histories (each starting all EMPTY), at most SIGSTACK deep, plus an overflow
/// count.
#[derive(Clone, Debug)]
struct RefTask {
    stack: Vec<Vec<u16>>,
    overflow: u32,
}

impl RefTask {
    fn fresh() -> Self {
        RefTask {
            stack: vec![vec![SYM_EMPTY; WINDOW]],
            overflow: 0,
        }
    }

    fn window(&self) -> Vec<u16> {
        let top = self.stack.last().expect("frame 0 never pops");
        top[top.len() - WINDOW..].to_vec()
    }
}

/// Loops become single calls, so every call is checked on its own.
fn expand(ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .flat_map(|op| match *op {
            Op::Loop(t, n) => (0..n).map(|i| Op::Call(t, i64::from(i % 3))).collect(),
            ref other => vec![other.clone()],
        })
        .collect()
}

/// Quick to freeze (with factor 40/32, clean calls beyond a fifth of training rather than
/// three quarters), quick to promote, quick to trip the limits. With the anomaly limit below the
/// tolerize limit a burst stops normal monitoring; the other way round it tolerizes first.
fn settings(anomaly_limit: u32, tolerize_limit: u32, lifecycle: Lifecycle) -> Settings {
    Settings {
        normal_wait_ns: 20,
        normal_factor: 40,
        anomaly_limit,
        tolerize_limit,
        log_sequences: true,
        lifecycle,
        ..Settings::default()
    }
}

fn lifecycle() -> impl Strategy<Value = Lifecycle> {
    prop_oneof![Just(Lifecycle::Ebpfh), Just(Lifecycle::Ph)]
}

fn any_settings() -> impl Strategy<Value = Settings> {
    (
        0u32..10,
        0u32..10,
        0u64..40,
        33u32..=128,
        any::<bool>(),
        lifecycle(),
    )
        .prop_map(
            |(anomaly_limit, tolerize_limit, wait, factor, log, lifecycle)| Settings {
                normal_wait_ns: wait,
                normal_factor: factor,
                log_sequences: log,
                ..settings(anomaly_limit, tolerize_limit, lifecycle)
            },
        )
}

/// Invariants that hold after every step.
fn check_state(m: &Model, r: &HashMap<u32, RefTask>) -> Result<(), TestCaseError> {
    for (tid, t) in m.tasks() {
        let lf = t.locality();
        prop_assert_eq!(lf.lfc(), lf.set_cells(), "tid {}", tid);
        prop_assert!(lf.lfc() as usize <= LOCALITY);
        prop_assert!(lf.lfc_max() >= lf.lfc());
        prop_assert!((t.depth() as usize) < SIGSTACK);
        prop_assert!(t.overflow() == 0 || t.depth() as usize == SIGSTACK - 1);
        prop_assert!(m.state(t.key()).is_some(), "a task's profile exists");
        let rt = r.get(&tid).expect("reference has the task");
        prop_assert_eq!(t.window().to_vec(), rt.window(), "tid {}", tid);
        prop_assert_eq!(t.depth() as usize, rt.stack.len() - 1);
        prop_assert_eq!(t.overflow(), rt.overflow);
    }
    prop_assert_eq!(m.tasks().count(), r.len());
    for p in &m.profiles {
        prop_assert_eq!(p.state & !crate::profile::PS_KEPT, 0, "never PROMOTING");
        if m.settings().lifecycle == Lifecycle::Ebpfh {
            prop_assert!(p.life.novelty <= crate::profile::NOVELTY_ONE);
            if p.state & PS_NORMAL != 0 {
                // Nothing learned while normal is tested before it is accepted: training holds
                // all the testing data, and exactly it when nothing is pending.
                let (train, test) = (p.train.to_table(), p.test.to_table());
                for (c, row) in &test.rows {
                    for (prev, &bits) in row.iter().enumerate() {
                        prop_assert_eq!(train.get(*c, prev as u16) & bits, bits);
                    }
                }
                if p.life.pending == 0 {
                    prop_assert!(train == test, "{} has unpending new pairs", p.key);
                }
            } else {
                prop_assert!(
                    p.state & PS_TAINTED == 0,
                    "only a normal profile is tainted"
                );
            }
        }
        prop_assert!(p.last_mod_count <= p.train_count);
        // reset_training skips zeroing when nothing was learned; this is why that is sound.
        prop_assert!(p.sequences != 0 || p.train.pairs() == 0);
    }
    Ok(())
}

/// Which parts of the state machine a run went through.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    normal: bool,
    stopped: bool,
    tolerized: bool,
    overflowed: bool,
    accepted: bool,
}

fn run_ops(settings: Settings, ops: &[Op]) -> Result<Coverage, TestCaseError> {
    let mut seen = Coverage::default();
    let mut m = Model::new(settings);
    let mut r: HashMap<u32, RefTask> = HashMap::new();
    let mut now = 0u64;
    for op in &expand(ops) {
        // Per slot: training pairs and the testing table, straight from the model's own
        // representation (child modules may read it), which is cheap enough for every step.
        let before: Vec<(u64, Rows)> = m
            .profiles
            .iter()
            .map(|p| (p.train.pairs(), p.test.clone()))
            .collect();
        let task_key = |m: &Model, t: u32| m.task(t).map(|t| t.key());
        let mut events = Vec::new();
        // Which key may lose training pairs, and which may get new testing data, in this step.
        let (mut may_forget, mut may_retest) = (None, None);
        match *op {
            Op::Loop(..) => unreachable!("expanded"),
            Op::Exec(t, k) => {
                events = m.exec(t, key(k), now);
                r.insert(t, RefTask::fresh());
            }
            Op::Accept(k) => {
                if m.accept(key(k)).is_ok() {
                    may_retest = Some(key(k));
                    seen.accepted = true;
                }
            }
            Op::Fork(p, c) => {
                m.fork(p, c);
                if let Some(top) = r.get(&p).map(|rt| rt.stack.last().cloned()) {
                    r.insert(
                        c,
                        RefTask {
                            stack: vec![top.expect("frame 0")],
                            overflow: 0,
                        },
                    );
                }
            }
            Op::Exit(t) => {
                events = m.exit(t, now);
                r.remove(&t);
            }
            Op::Signal(t) => {
                m.signal_handler(t);
                if let Some(rt) = r.get_mut(&t) {
                    if rt.stack.len() < SIGSTACK && rt.overflow == 0 {
                        rt.stack.push(vec![SYM_EMPTY; WINDOW]);
                    } else {
                        rt.overflow += 1;
                    }
                }
            }
            Op::Call(t, id) => {
                let k = task_key(&m, t);
                let was_normal = k
                    .and_then(|k| m.state(k))
                    .is_some_and(|s| s & PS_NORMAL != 0);
                events = m.syscall(t, id, now);
                if let Some(rt) = r.get_mut(&t) {
                    // Paused calls are not recorded, but rt_sigreturn still pops.
                    if m.settings().monitoring {
                        rt.stack
                            .last_mut()
                            .expect("frame 0")
                            .push(syscalls::symbol(id));
                    }
                    if id == NR_RT_SIGRETURN {
                        if rt.overflow > 0 {
                            rt.overflow -= 1;
                        } else if rt.stack.len() > 1 {
                            rt.stack.pop();
                        }
                    }
                }
                let started = events
                    .iter()
                    .any(|e| matches!(e, Event::NormalStarted { .. }));
                if m.task(t)
                    .is_some_and(|t| t.lfc() > m.settings().tolerize_limit)
                {
                    may_forget = k;
                }
                // The ebpfh lifecycle drops pending pairs when normal monitoring stops.
                if events
                    .iter()
                    .any(|e| matches!(e, Event::NormalStopped { .. }))
                {
                    may_forget = k;
                }
                if started {
                    may_retest = k;
                }
                for e in &events {
                    match e {
                        Event::Anomaly { misses, lfc, .. } => {
                            prop_assert!((1..=8).contains(misses));
                            prop_assert!(*lfc >= 1);
                            prop_assert!(was_normal || started, "anomaly only when normal");
                        }
                        Event::NormalStopped { reason, .. } => {
                            prop_assert_eq!(*reason, StopReason::AnomalyLimit)
                        }
                        Event::ProfileCreated { .. } => prop_assert!(false, "calls create nothing"),
                        _ => {}
                    }
                }
            }
            Op::Tick(d) => now += d,
            Op::Monitoring(on) => m.settings_mut().monitoring = on,
            Op::Normalize(k) => {
                let _ = m.normalize(key(k));
                may_retest = Some(key(k));
            }
            Op::Sensitize(k) => {
                let _ = m.sensitize(key(k));
                may_forget = Some(key(k));
            }
            Op::Tolerize(k) => {
                let _ = m.tolerize(key(k));
            }
            Op::Reset(k) => {
                let _ = m.reset(key(k), now);
                may_forget = Some(key(k));
                may_retest = Some(key(k));
            }
            Op::Freeze(k) => {
                let _ = m.freeze(key(k), now);
            }
        }
        // A run's end may accept pending pairs.
        for e in &events {
            if let Event::PendingAccepted { key, .. } = e {
                may_retest = Some(*key);
                seen.accepted = true;
            }
        }
        if !matches!(op, Op::Exec(..)) {
            let created = events
                .iter()
                .any(|e| matches!(e, Event::ProfileCreated { .. }));
            prop_assert!(!created, "only exec creates profiles");
        }
        for (p, (train_pairs, test)) in m.profiles.iter().zip(before) {
            if may_forget != Some(p.key) {
                prop_assert!(
                    p.train.pairs() >= train_pairs,
                    "{:?} lost training pairs of {}",
                    op,
                    p.key
                );
            }
            if may_retest != Some(p.key) {
                prop_assert!(p.test == test, "{:?} changed testing data of {}", op, p.key);
            }
        }
        check_state(&m, &r)?;
        for e in &events {
            seen.normal |= matches!(e, Event::NormalStarted { .. });
            seen.stopped |= matches!(e, Event::NormalStopped { .. });
            seen.tolerized |= matches!(e, Event::TolerizeLimit { .. });
        }
        seen.overflowed |= m.tasks().any(|(_, t)| t.overflow() > 0);
    }
    Ok(seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn invariants_hold_under_any_interleaving(
        settings in any_settings(),
        ops in prop::collection::vec(op(), 1..400),
    ) {
        run_ops(settings, &ops)?;
    }

    #[test]
    fn profiles_survive_the_exchange_format(ops in prop::collection::vec(op(), 1..300)) {
        let mut m = Model::new(settings(3, 5, Lifecycle::Ebpfh));
        let mut now = 0;
        for op in &expand(&ops) {
            match *op {
                Op::Exec(t, k) => { m.exec(t, key(k), now); }
                Op::Fork(p, c) => m.fork(p, c),
                Op::Signal(t) => m.signal_handler(t),
                Op::Call(t, id) => { m.syscall(t, id, now); }
                Op::Exit(t) => { m.exit(t, now); }
                Op::Tick(d) => now += d,
                Op::Normalize(k) => { let _ = m.normalize(key(k)); }
                _ => {}
            }
        }
        let mut copy = Model::new(settings(3, 5, Lifecycle::Ebpfh));
        for k in m.keys().collect::<Vec<_>>() {
            let p = m.profile(k).expect("listed");
            copy.insert_profile(&p);
            prop_assert_eq!(copy.profile(k), Some(p));
        }
    }
}

/// The invariants are only worth something if random runs reach every state: check they do.
#[test]
fn random_runs_reach_every_state() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut all = Coverage::default();
    for run in 0..12 {
        let ops = prop::collection::vec(op(), 500)
            .new_tree(&mut runner)
            .expect("strategy")
            .current();
        let lifecycle = if run % 4 < 2 {
            Lifecycle::Ph
        } else {
            Lifecycle::Ebpfh
        };
        let settings = if run % 2 == 0 {
            settings(1, 9, lifecycle)
        } else {
            settings(8, 2, lifecycle)
        };
        let seen = run_ops(settings, &ops).expect("invariants");
        all.normal |= seen.normal;
        all.stopped |= seen.stopped;
        all.tolerized |= seen.tolerized;
        all.overflowed |= seen.overflowed;
        all.accepted |= seen.accepted;
    }
    assert!(
        all.normal && all.stopped && all.tolerized && all.overflowed && all.accepted,
        "{all:?}"
    );
}
