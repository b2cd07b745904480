//! Hand-computed cases: every expected value below was worked out from the rules
//! (docs/lifecycle.md), not read off the code. Comments show the arithmetic. The cases up to
//! `lifecycle` run pH's lifecycle; the ebpfh lifecycle's have their own section at the end.

use super::*;
use crate::syscalls::{SYM_EMPTY, SYM_OTHER};

const K: ProfileKey = ProfileKey::file(8, 42);
const K2: ProfileKey = ProfileKey::file(8, 43);
const E: u16 = SYM_EMPTY;
/// getpid, write, read, open, close: stand-ins; only identity matters.
const A: i64 = 39;
const B: i64 = 1;
const C: i64 = 0;
const X: i64 = 2;
const Y: i64 = 3;
const Z: i64 = 4;
const W: i64 = 5;
/// nanosleep, as a signal handler's call.
const H: i64 = 35;
const SIGRET: i64 = NR_RT_SIGRETURN;
const WAIT: u64 = 7 * 24 * 3600 * 1_000_000_000;
const T0: u64 = 1_000_000;

fn s(id: i64) -> u16 {
    id as u16
}

/// pH's settings and lifecycle.
fn ph() -> Settings {
    Settings {
        lifecycle: Lifecycle::Ph,
        ..Settings::default()
    }
}

fn model() -> Model {
    Model::new(ph())
}

/// A model that also reports every call that taught the profile a pair.
fn logging() -> Model {
    Model::new(Settings {
        log_sequences: true,
        ..ph()
    })
}

/// Runs `ids` as task `tid` at time `now`, returning every event in order.
fn run(m: &mut Model, tid: u32, ids: &[i64], now: u64) -> Vec<Event> {
    ids.iter().flat_map(|&id| m.syscall(tid, id, now)).collect()
}

fn new_sequences(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::NewSequence { .. }))
        .count()
}

fn anomalies(events: &[Event]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Anomaly { misses, .. } => Some(*misses),
            _ => None,
        })
        .collect()
}

fn counters(count: u64, train: u64, last_mod: u64, seq: u64, anomalies: u64) -> Counters {
    Counters {
        count,
        train_count: train,
        last_mod_count: last_mod,
        sequences: seq,
        anomalies,
    }
}

/// Task 1 runs `A` 9 times (learning one new distance each time) and 28 clean times, which
/// freezes the profile at T0 (see `freezing_needs_more_than_three_quarters_clean_calls`); one
/// more call after the wait promotes it. Result: a normal profile whose only row is A, holding
/// A[EMPTY] and A[A] at every distance, and task 1's window is A x 8.
fn normal_on_a(m: &mut Model) {
    m.exec(1, K, 0);
    run(m, 1, &[A; 37], T0);
    assert_eq!(m.state(K), Some(PS_FROZEN));
    run(m, 1, &[A], T0 + WAIT + 1);
    assert_eq!(m.state(K), Some(PS_NORMAL));
}

#[test]
fn exec_creates_a_profile_once() {
    let mut m = model();
    assert_eq!(
        m.exec(1, K, T0),
        vec![Event::ProfileCreated { tid: 1, key: K }]
    );
    assert_eq!(m.exec(2, K, T0 + 5), vec![]);
    let p = m.profile(K).unwrap();
    assert_eq!(p.normal_time, T0 + WAIT, "set when the profile was created");
    assert_eq!((p.state, p.count), (0, 0));
}

#[test]
fn first_call_after_exec_misses_all_eight_distances() {
    let mut m = logging();
    m.exec(1, K, 0);
    // The window is EMPTY x 8 then A: eight pairs (A, EMPTY, 1..8), all new.
    let ev = m.syscall(1, A, 0);
    assert_eq!(
        ev,
        vec![Event::NewSequence {
            tid: 1,
            key: K,
            lfc: 0,
            window: [E, E, E, E, E, E, E, E, s(A)],
            counters: counters(1, 1, 0, 1, 0),
        }]
    );
    let p = m.profile(K).unwrap();
    assert_eq!(p.train.get(s(A), E), 0xff);
    assert_eq!(p.train.pairs(), 8);
    assert_eq!(p.test.pairs(), 0);
}

#[test]
fn a_repeated_run_learns_nothing_new() {
    let mut m = logging();
    m.exec(1, K, 0);
    // A  [E..]        new row A
    // B  [A E..]      new row B
    // A  [B A E..]    A[B]@1 new
    // B  [A B A E..]  B[B]@2 new
    let first = run(&mut m, 1, &[A, B, A, B], 0);
    assert_eq!(new_sequences(&first), 4);
    let pairs = m.profile(K).unwrap().train.pairs();
    // A fresh image replays the same windows, so every pair is known.
    m.exec(1, K, 0);
    assert_eq!(run(&mut m, 1, &[A, B, A, B], 0), vec![]);
    let p = m.profile(K).unwrap();
    assert_eq!(p.train.pairs(), pairs);
    assert_eq!((p.sequences, p.train_count, p.last_mod_count), (4, 8, 4));
    // 8 training calls, 4 since the last change: 8*32 = 256 is not > (8-4)*128 = 512.
    assert_eq!(p.state, 0);
}

#[test]
fn freezing_needs_more_than_three_quarters_clean_calls() {
    let mut m = logging();
    m.exec(1, K, 0);
    // Call k (k = 1..9) of A A A ... is new at distance k-1 (k=1: all, from EMPTY): 9 learning
    // calls. After 9 + n calls, train = 9 + n and normal = train - last_mod = 9, so with 128/32
    // freezing needs (9+n)*32 > 9*128, i.e. n > 27: the 28th clean call freezes.
    let ev = run(&mut m, 1, &[A; 9], 10);
    assert_eq!(new_sequences(&ev), 9);
    assert_eq!(run(&mut m, 1, &[A; 27], 20), vec![]);
    let c = m.counters(K).unwrap();
    assert_eq!((c.train_count, c.last_mod_count), (36, 27));
    // Boundary: 36*32 == 9*128 == 1152, equal is not enough.
    assert_eq!(m.state(K), Some(0));
    assert_eq!(m.syscall(1, A, 30), vec![]);
    assert_eq!(m.state(K), Some(PS_FROZEN));
    assert_eq!(
        m.profile(K).unwrap().normal_time,
        30 + WAIT,
        "the freezing call's time"
    );
}

#[test]
fn a_new_pair_cancels_the_freeze() {
    let mut m = model();
    m.exec(1, K, 0);
    run(&mut m, 1, &[A; 37], T0);
    assert_eq!(m.state(K), Some(PS_FROZEN));
    // B is new; it unfreezes, so even long after the wait nothing is promoted.
    run(&mut m, 1, &[B], T0 + 1);
    assert_eq!(m.state(K), Some(0));
    assert_eq!(run(&mut m, 1, &[A; 20], T0 + 2 * WAIT), vec![]);
    assert_eq!(m.state(K), Some(0));
}

#[test]
fn promotion_waits_until_normal_wait_has_passed() {
    let mut m = model();
    m.exec(1, K, 0);
    run(&mut m, 1, &[A; 37], T0); // frozen at call 37, normal_time = T0 + WAIT
    assert_eq!(
        run(&mut m, 1, &[A], T0 + WAIT),
        vec![],
        "now == normal_time is not past it"
    );
    assert_eq!(m.state(K), Some(PS_FROZEN));
    let ev = run(&mut m, 1, &[A], T0 + WAIT + 1);
    // Call 39: train 39, last change at call 9 so last_mod 30, 9 sequences.
    assert_eq!(
        ev,
        vec![Event::NormalStarted {
            tid: 1,
            key: K,
            lfc: 0,
            before: counters(39, 39, 30, 9, 0),
        }]
    );
    let p = m.profile(K).unwrap();
    assert_eq!(p.state, PS_NORMAL, "frozen is cleared");
    assert_eq!((p.train_count, p.last_mod_count, p.anomalies), (0, 0, 0));
    assert_eq!((p.count, p.sequences), (39, 9), "kept");
    assert_eq!(p.test, p.train);
    assert_eq!(p.test.get(s(A), E), 0xff);
    assert_eq!(p.test.get(s(A), s(A)), 0xff);
    assert_eq!(p.test.pairs(), 16);
}

#[test]
fn a_normal_profile_reports_each_unknown_pair() {
    let mut m = model();
    normal_on_a(&mut m);
    let count = m.task(1).unwrap().count();
    // B has no testing row: 8 misses. Then B sits at distance 1, 2, .. 8 of the next A calls:
    // one miss each. The ninth A sees A x 8 again.
    let ev = run(&mut m, 1, &[B], T0 + WAIT + 2);
    assert_eq!(
        ev,
        vec![Event::Anomaly {
            tid: 1,
            key: K,
            window: [s(A), s(A), s(A), s(A), s(A), s(A), s(A), s(A), s(B)],
            misses: 8,
            new_pairs: 8,
            unknown: true,
            lfc: 1,
            profile_anomalies: 1,
            task_count: count + 1,
        }]
    );
    let ev = run(&mut m, 1, &[A; 9], T0 + WAIT + 3);
    assert_eq!(anomalies(&ev), vec![1; 8]);
    let t = m.task(1).unwrap();
    assert_eq!((t.lfc(), t.lfc_max()), (9, 9));
    // Training went on: B and its eight followers were new pairs; testing data is unchanged.
    let p = m.profile(K).unwrap();
    assert_eq!((p.sequences, p.anomalies), (9 + 9, 9));
    assert_eq!(p.test.pairs(), 16);
    assert_eq!(p.train.pairs(), 16 + 8 + 8);
}

/// An anomaly says how many of its missing pairs were new to the training data (the same
/// window again misses as much but teaches nothing: its pairs are pending) and whether the
/// testing data knows its call at all (B stays unknown while its pairs are only pending).
#[test]
fn an_anomaly_counts_the_pairs_it_taught_and_flags_a_call_never_made() {
    let new_pairs = |ev: &[Event]| -> Vec<u16> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Anomaly { new_pairs, .. } => Some(*new_pairs),
                _ => None,
            })
            .collect()
    };
    let unknown = |ev: &[Event]| -> Vec<bool> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Anomaly { unknown, .. } => Some(*unknown),
                _ => None,
            })
            .collect()
    };
    let mut b_then_a = vec![true];
    b_then_a.extend([false; 8]);
    for lifecycle in [Lifecycle::Ph, Lifecycle::Ebpfh] {
        let mut m = Model::new(Settings { lifecycle, ..ph() });
        // Training on A x 37 as in `normal_on_a`; the ebpfh lifecycle freezes on runs, so
        // freeze by command.
        m.exec(1, K, 0);
        run(&mut m, 1, &[A; 37], T0);
        if lifecycle == Lifecycle::Ebpfh {
            m.freeze(K, T0).unwrap();
        }
        run(&mut m, 1, &[A], T0 + WAIT + 1);
        assert_eq!(m.state(K).map(|s| s & PS_NORMAL), Some(PS_NORMAL));
        // The second time in a task of its own, whose LFC stays below the tolerize limit.
        m.fork(1, 20);
        let ev = run(&mut m, 1, &[B, A, A, A, A, A, A, A, A], T0 + WAIT + 2);
        assert_eq!(anomalies(&ev), vec![8, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(
            new_pairs(&ev),
            vec![8, 1, 1, 1, 1, 1, 1, 1, 1],
            "{lifecycle:?}"
        );
        assert_eq!(unknown(&ev), b_then_a);
        let ev = run(&mut m, 20, &[B, A, A, A, A, A, A, A, A], T0 + WAIT + 3);
        assert_eq!(
            anomalies(&ev),
            vec![8, 1, 1, 1, 1, 1, 1, 1, 1],
            "{lifecycle:?}"
        );
        assert_eq!(new_pairs(&ev), vec![0; 9], "{lifecycle:?}: all pending");
        assert_eq!(unknown(&ev), b_then_a);
    }
}

#[test]
fn the_anomaly_limit_trips_on_the_32nd_anomalous_call() {
    let mut m = model();
    normal_on_a(&mut m);
    let now = T0 + WAIT + 2;
    // Four children each continue task 1's A x 8 window and run B then A x 8: 9 anomalous
    // calls each with a fresh locality frame, so LFC stays at or below 9 (under the tolerize
    // limit of 12) and only the profile's count grows: 9, 18, 27, then the 5th call of child 4
    // is anomalous call 32, checked with 31 > 30.
    for child in 10..13 {
        m.fork(1, child);
        let ev = run(&mut m, child, &[B, A, A, A, A, A, A, A, A], now);
        assert_eq!(anomalies(&ev).len(), 9);
    }
    assert_eq!(m.counters(K).unwrap().anomalies, 27);
    m.fork(1, 13);
    let ev = run(&mut m, 13, &[B, A, A, A], now);
    assert_eq!(anomalies(&ev).len(), 4, "call 31: 30 > 30 is false");
    assert_eq!(m.state(K), Some(PS_NORMAL));
    let ev = m.syscall(13, A, now);
    // LFC: the frame is reset, then this call lands on cell 0.
    let Event::Anomaly {
        misses,
        lfc,
        profile_anomalies,
        ..
    } = ev[0]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((misses, lfc, profile_anomalies), (1, 1, 32));
    let Event::NormalStopped {
        tid,
        lfc,
        counters: c,
        reason,
        ..
    } = ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((tid, lfc, c.anomalies), (13, 1, 32));
    assert_eq!(reason, StopReason::AnomalyLimit);
    assert_eq!(ev.len(), 2);
    assert_eq!(m.state(K), Some(0));
    // Not normal: nothing is reported any more.
    assert_eq!(
        anomalies(&run(&mut m, 13, &[B, A, A, A], now)),
        Vec::<u16>::new()
    );
}

#[test]
fn the_locality_frame_forgets_an_anomaly_128_calls_later() {
    let mut m = model();
    normal_on_a(&mut m);
    m.fork(1, 2);
    // B A x 8: anomalous feeds 1..9 land on cells 0..8.
    run(&mut m, 2, &[B, A, A, A, A, A, A, A, A], T0 + WAIT + 2);
    assert_eq!(m.task(2).unwrap().lfc(), 9);
    // Feeds 10..128 are clean and land on cells 9..127: nothing to clear.
    run(&mut m, 2, &[A; 119], T0 + WAIT + 2);
    assert_eq!(m.task(2).unwrap().lfc(), 9);
    // Feeds 129..137 come back over cells 0..8 and clear one each.
    for expect in (0..9).rev() {
        run(&mut m, 2, &[A], T0 + WAIT + 2);
        assert_eq!(m.task(2).unwrap().lfc(), expect);
    }
    assert_eq!(m.task(2).unwrap().lfc_max(), 9);
}

#[test]
fn the_tolerize_limit_resets_on_every_call_but_reports_once_per_crossing() {
    let mut m = model();
    normal_on_a(&mut m);
    let now = T0 + WAIT + 2;
    m.fork(1, 2);
    // B has no testing row: every B is anomalous. LFC 13 > 12 at the 13th.
    let ev = run(&mut m, 2, &[B; 12], now);
    assert_eq!(anomalies(&ev).len(), 12);
    assert!(!m.task(2).unwrap().tolerized());
    let count = m.counters(K).unwrap().count;
    let ev = m.syscall(2, B, now);
    assert!(
        matches!(
            ev[0],
            Event::Anomaly {
                lfc: 13,
                profile_anomalies: 13,
                ..
            }
        ),
        "{ev:?}"
    );
    assert_eq!(
        ev[1],
        Event::TolerizeLimit {
            tid: 2,
            key: K,
            lfc: 13,
            counters: counters(count + 1, 0, 0, 0, 0),
        }
    );
    assert!(m.task(2).unwrap().tolerized());
    let p = m.profile(K).unwrap();
    assert_eq!(p.train.pairs(), 0, "training data forgotten");
    assert_eq!(
        (p.state, p.test.pairs()),
        (PS_NORMAL, 16),
        "still normal, testing kept"
    );

    // Two more B, then A x 8 whose windows still hold B (8, 7, .. 1 misses): anomalous feeds
    // 14..23. Each call learns its pairs and loses them again; no second event.
    let ev = run(&mut m, 2, &[B, B, A, A, A, A, A, A, A, A], now);
    assert_eq!(anomalies(&ev), vec![8, 8, 8, 7, 6, 5, 4, 3, 2, 1]);
    assert!(ev.iter().all(|e| !matches!(e, Event::TolerizeLimit { .. })));
    let p = m.profile(K).unwrap();
    assert_eq!((p.train.pairs(), p.sequences, p.anomalies), (0, 0, 0));
    assert_eq!(m.task(2).unwrap().lfc(), 23);

    // Clean feeds 24..128 keep LFC 23; feeds 129..138 clear cells 0..9 (LFC 13, still over).
    run(&mut m, 2, &[A; 105 + 10], now);
    assert_eq!(m.task(2).unwrap().lfc(), 13);
    assert!(m.task(2).unwrap().tolerized());
    assert_eq!(m.profile(K).unwrap().train.pairs(), 0);
    // Feed 139 clears cell 10: LFC 12 is not over the limit, the flag drops, learning resumes.
    assert_eq!(run(&mut m, 2, &[A], now), vec![]);
    assert_eq!(m.task(2).unwrap().lfc(), 12);
    assert!(!m.task(2).unwrap().tolerized());
    assert_eq!(
        m.profile(K).unwrap().train.pairs(),
        8,
        "A[A] at 1..8 learned again"
    );

    // Let the frame empty (cells 11..22), then cross again: a second event.
    run(&mut m, 2, &[A; 12], now);
    assert_eq!(m.task(2).unwrap().lfc(), 0);
    let ev = run(&mut m, 2, &[B; 13], now);
    let tolerize = ev
        .iter()
        .filter(|e| matches!(e, Event::TolerizeLimit { lfc: 13, .. }))
        .count();
    assert_eq!(tolerize, 1);
}

#[test]
fn fork_continues_the_parents_window() {
    let mut m = logging();
    m.exec(1, K, 0);
    run(&mut m, 1, &[X, Y, Z], 0);
    m.fork(1, 2);
    let t = m.task(2).unwrap();
    assert_eq!((t.count(), t.lfc(), t.depth(), t.key()), (0, 0, 0, K));
    // The child's first call pairs with the parent's history: W[Z]@1, W[Y]@2, W[X]@3, then
    // EMPTY at 4..8.
    let ev = m.syscall(2, W, 0);
    assert!(matches!(
        &ev[0],
        Event::NewSequence { tid: 2, window, .. } if *window == [E, E, E, E, E, s(X), s(Y), s(Z), s(W)]
    ));
    let p = m.profile(K).unwrap();
    assert_eq!(p.train.get(s(W), s(Z)), 0b0000_0001);
    assert_eq!(p.train.get(s(W), s(Y)), 0b0000_0010);
    assert_eq!(p.train.get(s(W), s(X)), 0b0000_0100);
    assert_eq!(p.train.get(s(W), E), 0b1111_1000);
    // The parent's own window did not move.
    assert_eq!(
        m.task(1).unwrap().window(),
        [E, E, E, E, E, E, s(X), s(Y), s(Z)]
    );
    assert_eq!(m.task(1).unwrap().count(), 3);
}

#[test]
fn fork_of_an_untraced_task_traces_nothing() {
    let mut m = model();
    m.fork(1, 2);
    assert!(m.task(2).is_none());
    assert_eq!(m.syscall(2, A, 0), vec![]);
}

#[test]
fn fork_inside_a_handler_hands_the_handler_frame_to_the_child() {
    let mut m = model();
    m.exec(1, K, 0);
    run(&mut m, 1, &[X], 0);
    m.signal_handler(1);
    run(&mut m, 1, &[H], 0);
    m.fork(1, 2);
    let t = m.task(2).unwrap();
    assert_eq!((t.depth(), t.overflow()), (0, 0));
    assert_eq!(t.window(), [E, E, E, E, E, E, E, E, s(H)]);
}

#[test]
fn a_handler_runs_in_its_own_frame_until_rt_sigreturn() {
    let mut m = model();
    m.exec(1, K, 0);
    run(&mut m, 1, &[A, A, A], 0);
    m.signal_handler(1);
    assert_eq!(m.task(1).unwrap().depth(), 1);
    // The handler starts from EMPTY: H[EMPTY] at 1..8. rt_sigreturn is its last call:
    // R[H]@1, R[EMPTY]@2..8. Then the frame is popped.
    run(&mut m, 1, &[H, SIGRET], 0);
    let t = m.task(1).unwrap();
    assert_eq!(t.depth(), 0);
    assert_eq!(
        t.window(),
        [E, E, E, E, E, E, s(A), s(A), s(A)],
        "untouched"
    );
    run(&mut m, 1, &[A], 0);
    let p = m.profile(K).unwrap();
    assert_eq!(p.train.get(s(H), E), 0xff);
    assert_eq!(p.train.get(s(SIGRET), s(H)), 0b0000_0001);
    assert_eq!(p.train.get(s(SIGRET), E), 0b1111_1110);
    // Row A saw only the main program: A[A] at 1, 2, 3 and A[EMPTY] at 1..8.
    assert_eq!(p.train.get(s(A), s(A)), 0b0000_0111);
    assert_eq!(p.train.get(s(A), E), 0xff);
    assert_eq!(p.train.get(s(A), s(H)), 0);
    assert_eq!(p.train.get(s(A), s(SIGRET)), 0);
    assert_eq!(p.train.rows.len(), 3);
}

#[test]
fn rt_sigreturn_outside_a_handler_pops_nothing() {
    let mut m = model();
    m.exec(1, K, 0);
    run(&mut m, 1, &[SIGRET, SIGRET], 0);
    assert_eq!(m.task(1).unwrap().depth(), 0);
    assert_eq!(m.task(1).unwrap().window()[7..], [s(SIGRET), s(SIGRET)]);
}

#[test]
fn overflowing_handlers_keep_pushes_and_pops_matched() {
    let mut m = model();
    m.exec(1, K, 0);
    run(&mut m, 1, &[X, Y], 0);
    // Frames 1..7 take seven nested handlers; two more only count as overflow.
    for depth in 1..=7 {
        m.signal_handler(1);
        run(&mut m, 1, &[H], 0);
        assert_eq!(m.task(1).unwrap().depth(), depth);
    }
    m.signal_handler(1);
    m.signal_handler(1);
    let t = m.task(1).unwrap();
    assert_eq!((t.depth(), t.overflow()), (7, 2));
    // Calls of the overflowing handlers go to the deepest frame.
    run(&mut m, 1, &[Z], 0);
    assert_eq!(m.task(1).unwrap().window()[6..], [E, s(H), s(Z)]);
    // Nine returns: two undo the overflow, seven the frames.
    for (depth, overflow) in [
        (7, 1),
        (7, 0),
        (6, 0),
        (5, 0),
        (4, 0),
        (3, 0),
        (2, 0),
        (1, 0),
        (0, 0),
    ] {
        run(&mut m, 1, &[SIGRET], 0);
        let t = m.task(1).unwrap();
        assert_eq!((t.depth(), t.overflow()), (depth, overflow));
    }
    assert_eq!(m.task(1).unwrap().window()[6..], [E, s(X), s(Y)]);
    // exec forgets the whole stack.
    m.signal_handler(1);
    m.exec(1, K, 0);
    assert_eq!(m.task(1).unwrap().depth(), 0);
}

#[test]
fn foreign_ids_become_other_and_only_the_native_rt_sigreturn_pops() {
    let mut m = model();
    m.exec(1, K, 0);
    m.signal_handler(1);
    // x32's rt_sigreturn is 0x40000000 + 513: OTHER, and not a return.
    run(&mut m, 1, &[-1, 0x4000_0201, 510], 0);
    let t = m.task(1).unwrap();
    assert_eq!(t.depth(), 1);
    assert_eq!(t.window()[6..], [SYM_OTHER; 3]);
}

#[test]
fn paused_monitoring_ignores_calls_but_still_closes_handler_frames() {
    let mut m = model();
    m.exec(1, K, 0);
    m.signal_handler(1);
    m.settings_mut().monitoring = false;
    assert_eq!(run(&mut m, 1, &[A, SIGRET], 0), vec![]);
    // Nothing was counted, but the handler's frame is gone, as in the kernel: a pause must not
    // leave the program's later calls stuck in a handler frame.
    assert_eq!(
        (m.task(1).unwrap().depth(), m.task(1).unwrap().count()),
        (0, 0)
    );
    assert_eq!(m.counters(K).unwrap().count, 0);
}

#[test]
fn a_recorded_sigreturn_pops_like_rt_sigreturn() {
    let mut m = model();
    m.exec(1, K, 0);
    m.signal_handler(1);
    m.signal_handler(1);
    assert_eq!(m.task(1).unwrap().depth(), 2);
    m.sigreturn(1);
    assert_eq!(m.task(1).unwrap().depth(), 1);
    m.sigreturn(1);
    m.sigreturn(1); // never below frame 0
    assert_eq!(m.task(1).unwrap().depth(), 0);
}

#[test]
fn exit_forgets_the_task() {
    let mut m = model();
    m.exec(1, K, 0);
    m.exit(1, 0);
    assert!(m.task(1).is_none());
    assert_eq!(m.syscall(1, A, 0), vec![]);
    assert_eq!(m.counters(K).unwrap().count, 0);
}

#[test]
fn a_normal_profile_refreezes_and_renormalises_with_what_it_learned() {
    let mut m = model();
    normal_on_a(&mut m);
    let now = T0 + WAIT + 2;
    // B A x 8 teaches 9 calls' worth of pairs (train 9, last_mod 0); after n clean calls
    // train = 9 + n, normal = 9: freezing at n = 28 again, while normal.
    run(&mut m, 1, &[B, A, A, A, A, A, A, A, A], now);
    run(&mut m, 1, &[A; 27], now);
    assert_eq!(m.state(K), Some(PS_NORMAL));
    run(&mut m, 1, &[A], now);
    assert_eq!(m.state(K), Some(PS_NORMAL | PS_FROZEN));
    let ev = run(&mut m, 1, &[A], now + WAIT + 1);
    assert!(matches!(ev[0], Event::NormalStarted { .. }), "{ev:?}");
    let p = m.profile(K).unwrap();
    assert_eq!(p.state, PS_NORMAL);
    assert_eq!(p.test, p.train);
    assert_eq!(p.test.get(s(B), s(A)), 0xff);
    assert_eq!(
        anomalies(&run(&mut m, 1, &[B, A, A, A, A, A, A, A, A], now)),
        Vec::<u16>::new()
    );
}

#[test]
fn the_tolerize_limit_applies_in_any_state() {
    // pH checks LFC whether or not the profile is still normal: after an operator tolerize, a
    // task whose frame is still full keeps resetting the training data until LFC decays.
    let mut m = model();
    normal_on_a(&mut m);
    m.fork(1, 2);
    run(&mut m, 2, &[B; 14], T0 + WAIT + 2);
    m.tolerize(K).unwrap();
    assert_eq!(m.state(K), Some(0));
    run(&mut m, 2, &[C], T0 + WAIT + 2);
    assert_eq!(m.task(2).unwrap().lfc(), 14, "a clean call on a fresh cell");
    assert_eq!(m.profile(K).unwrap().train.pairs(), 0);
}

#[test]
fn normalize_refuses_an_untrained_profile() {
    let mut m = model();
    assert_eq!(m.normalize(K), Err(CommandError::NoProfile(K)));
    m.exec(1, K, 0);
    assert_eq!(m.normalize(K), Err(CommandError::Untrained(K)));
    assert_eq!(
        CommandError::Untrained(K).to_string(),
        "profile '8:42' has no training data yet, so it cannot be normalized"
    );
    run(&mut m, 1, &[A], 0);
    m.sensitize(K).unwrap();
    assert_eq!(
        m.normalize(K),
        Err(CommandError::Untrained(K)),
        "sensitized"
    );
}

#[test]
fn normalize_copies_training_data_without_touching_tasks() {
    let mut m = model();
    normal_on_a(&mut m);
    m.fork(1, 2);
    run(&mut m, 2, &[B, A], T0 + WAIT + 2); // 2 anomalies, B pairs learned
    m.normalize(K).unwrap();
    let p = m.profile(K).unwrap();
    assert_eq!(p.state, PS_NORMAL);
    assert_eq!(p.test, p.train);
    assert_eq!((p.train_count, p.last_mod_count, p.anomalies), (0, 0, 0));
    assert_eq!(p.sequences, 9 + 2, "kept");
    assert_eq!(m.task(2).unwrap().lfc(), 2, "no task's frame is reset");
    // A frozen profile is normalized too, and loses FROZEN.
    m.freeze(K, 0).unwrap();
    m.normalize(K).unwrap();
    assert_eq!(m.state(K), Some(PS_NORMAL));
}

#[test]
fn sensitize_forgets_training_but_stays_normal() {
    let mut m = model();
    normal_on_a(&mut m);
    run(&mut m, 1, &[B], T0 + WAIT + 2);
    m.sensitize(K).unwrap();
    let p = m.profile(K).unwrap();
    assert_eq!(p.state, PS_NORMAL);
    assert_eq!(p.train.pairs(), 0);
    assert_eq!(p.test.pairs(), 16);
    assert_eq!(
        (p.train_count, p.last_mod_count, p.sequences, p.anomalies),
        (0, 0, 0, 0)
    );
    assert!(p.count > 0, "count is not training data");
}

#[test]
fn tolerize_stops_normal_and_keeps_training() {
    let mut m = model();
    normal_on_a(&mut m);
    let before = m.profile(K).unwrap();
    m.tolerize(K).unwrap();
    let p = m.profile(K).unwrap();
    assert_eq!(p.state, 0);
    assert_eq!((p.train, p.test), (before.train, before.test));
    assert_eq!(
        anomalies(&run(&mut m, 1, &[B], T0 + WAIT + 2)),
        Vec::<u16>::new()
    );
    assert_eq!(m.tolerize(K2), Err(CommandError::NoProfile(K2)));
}

#[test]
fn reset_forgets_everything() {
    let mut m = logging();
    normal_on_a(&mut m);
    m.reset(K, 77).unwrap();
    let p = m.profile(K).unwrap();
    let mut want = Profile {
        key: K,
        normal_time: 77 + WAIT,
        // The ebpfh lifecycle's block starts over too: novelty "every run", last new at 77.
        life: crate::profile::Life {
            novelty: 1 << 16,
            last_new_time: 77,
            ..Default::default()
        },
        ..Profile::default()
    };
    want.exe = p.exe.clone();
    assert_eq!(p, want);
    // Training starts over: the next call is new at every distance with an unknown pair.
    assert_eq!(new_sequences(&run(&mut m, 1, &[A], 80)), 1);
}

#[test]
fn freeze_starts_the_wait_now() {
    let mut m = model();
    m.exec(1, K, 0);
    run(&mut m, 1, &[A, B], 0);
    m.freeze(K, 100).unwrap();
    assert_eq!(m.state(K), Some(PS_FROZEN));
    assert_eq!(m.profile(K).unwrap().normal_time, 100 + WAIT);
    // A clean call after the wait promotes it. A fresh image's first A has a known window
    // (a new pair would unfreeze instead).
    m.exec(1, K, 0);
    let ev = run(&mut m, 1, &[A], 101 + WAIT);
    assert!(matches!(ev[0], Event::NormalStarted { .. }), "{ev:?}");
}

#[test]
fn profiles_round_trip_and_replace_in_place() {
    let mut m = model();
    normal_on_a(&mut m);
    run(&mut m, 1, &[B, C], T0 + WAIT + 2);
    let mut p = m.profile(K).unwrap();
    p.exe = "/usr/bin/a".into();
    let mut other = model();
    other.insert_profile(&p);
    assert_eq!(other.profile(K), Some(p.clone()));
    // Replacing a profile keeps its tasks on it: task 1 now tests against an empty table.
    p.test = crate::profile::Table::default();
    m.insert_profile(&p);
    assert_eq!(m.keys().collect::<Vec<_>>(), vec![K]);
    assert_eq!(anomalies(&run(&mut m, 1, &[A], T0 + WAIT + 2)), vec![8]);
}

#[test]
fn settings_follow_the_monitors() {
    let s = Settings::from(&crate::settings::Settings::default());
    assert_eq!(s, Settings::default());
}

// ---- the ebpfh lifecycle ------------------------------------------------------------------------
//
// A "run" below is one exec of K, its calls, and its exit. The program is A B C repeated 40
// times (120 calls): its first run teaches K every pair it has, every later identical run none.

/// The ebpfh lifecycle with pH's other defaults, but tolerize_limit `tl` (minor LFC = tl / 2) and
/// anomaly_limit `al`.
fn ebpfh(tl: u32, al: u32) -> Model {
    Model::new(Settings {
        tolerize_limit: tl,
        anomaly_limit: al,
        ..Settings::default()
    })
}

fn program() -> Vec<i64> {
    [A, B, C].repeat(40)
}

/// One run of `ids` by task `tid` at `now`; every event in order.
fn one_run(m: &mut Model, tid: u32, ids: &[i64], now: u64) -> Vec<Event> {
    let mut ev = m.exec(tid, K, now);
    ev.extend(run(m, tid, ids, now));
    ev.extend(m.exit(tid, now));
    ev
}

fn life(m: &Model) -> crate::profile::Life {
    m.profile(K).unwrap().life
}

/// Runs 22 identical runs at T0 + 1 .. T0 + 22: frozen after the 22nd (see below).
fn converged(m: &mut Model) {
    for i in 1..=22 {
        one_run(m, 1, &program(), T0 + i);
    }
}

#[test]
fn novelty_decays_by_an_eighth_per_clean_run_and_freezes_below_a_sixteenth() {
    let mut m = ebpfh(12, 30);
    // Run 1 learns: novelty stays at 65536 (65536 - 8192 + 8192).
    one_run(&mut m, 1, &program(), T0 + 1);
    assert_eq!((life(&m).novelty, life(&m).runs), (65536, 1));
    // Each clean run: v - v/8 (integer): 57344, 50176, 43904, ...; after the 20th clean run
    // 4539, after the 21st 3972 < 4096 = 65536/16.
    one_run(&mut m, 1, &program(), T0 + 2);
    assert_eq!(life(&m).novelty, 57344);
    for i in 3..=21 {
        one_run(&mut m, 1, &program(), T0 + i);
    }
    assert_eq!(life(&m).novelty, 4539);
    assert_eq!(m.state(K), Some(0), "still training at 4539");
    one_run(&mut m, 1, &program(), T0 + 22);
    assert_eq!(life(&m).novelty, 3972);
    assert_eq!(m.state(K), Some(PS_FROZEN));
    let p = m.profile(K).unwrap();
    assert_eq!(
        p.normal_time,
        T0 + 22 + WAIT,
        "the wait starts at the freeze"
    );
    assert_eq!((p.count, p.life.runs), (22 * 120, 22));
}

#[test]
fn a_run_without_calls_is_no_run() {
    let mut m = ebpfh(12, 30);
    m.exec(1, K, T0);
    m.exit(1, T0);
    assert_eq!(life(&m).runs, 0);
    assert_eq!(life(&m).novelty, 65536);
}

#[test]
fn too_few_calls_never_freeze_on_runs() {
    let mut m = ebpfh(12, 30);
    // 30 runs of 30 calls: 900 < 1024 calls, however low novelty is.
    for i in 1..=30 {
        one_run(&mut m, 1, &[A, B, C].repeat(10), T0 + i);
    }
    assert!(life(&m).novelty < 4096);
    assert_eq!(m.state(K), Some(0));
    // The 35th run brings the count to 35 * 30 = 1050.
    for i in 31..=35 {
        one_run(&mut m, 1, &[A, B, C].repeat(10), T0 + i);
    }
    assert_eq!(m.state(K), Some(PS_FROZEN));
}

#[test]
fn frozen_tolerates_one_novel_run_and_thaws_on_two_in_a_row() {
    let mut m = ebpfh(12, 30);
    converged(&mut m);
    // A run with a new call X: 3972 - 496 + 8192 = 11668 <= 16384: still frozen, X learned.
    let mut with_x = program();
    with_x.insert(60, X);
    one_run(&mut m, 1, &with_x, T0 + 23);
    assert_eq!(life(&m).novelty, 11668);
    assert_eq!(m.state(K), Some(PS_FROZEN));
    assert_ne!(m.profile(K).unwrap().train.get(s(X), s(C)), 0);
    // Another new call Y right after: 11668 - 1458 + 8192 = 18402 > 16384: training again.
    let mut with_y = program();
    with_y.insert(60, Y);
    one_run(&mut m, 1, &with_y, T0 + 24);
    assert_eq!(life(&m).novelty, 18402);
    assert_eq!(m.state(K), Some(0));
}

#[test]
fn a_daemon_that_never_ends_a_run_freezes_after_a_quiet_wait() {
    let mut m = ebpfh(12, 30);
    m.exec(1, K, T0);
    // 1200 calls at T0: the last new pair was learned at T0 (within the first calls).
    run(&mut m, 1, &[A, B, C].repeat(400), T0);
    assert_eq!(life(&m).last_new_time, T0);
    // Quiet for exactly normal_wait: not yet (the rule wants more than that).
    run(&mut m, 1, &[A], T0 + WAIT);
    assert_eq!(m.state(K), Some(0));
    run(&mut m, 1, &[B], T0 + WAIT + 1);
    assert_eq!(m.state(K), Some(PS_FROZEN));
    assert_eq!(m.profile(K).unwrap().normal_time, T0 + WAIT + 1 + WAIT);
    assert_eq!(life(&m).runs, 0);
}

#[test]
fn a_clean_run_never_thaws_a_quiet_freeze() {
    let mut m = ebpfh(12, 30);
    m.exec(1, K, T0);
    run(&mut m, 1, &[A, B, C].repeat(400), T0);
    run(&mut m, 1, &[A], T0 + WAIT + 1);
    assert_eq!(m.state(K), Some(PS_FROZEN));
    // A second task's clean run ends: novelty 65536 - 8192 = 57344 > 16384, but nothing was new.
    m.fork(1, 2);
    run(&mut m, 2, &[B, C, A], T0 + WAIT + 2);
    m.exit(2, T0 + WAIT + 2);
    assert_eq!((life(&m).novelty, life(&m).runs), (57344, 1));
    assert_eq!(m.state(K), Some(PS_FROZEN));
    // A novel run does thaw it: 57344 - 7168 + 8192 = 58368 > 16384.
    m.fork(1, 3);
    run(&mut m, 3, &[X], T0 + WAIT + 3);
    m.exit(3, T0 + WAIT + 3);
    assert_eq!(life(&m).novelty, 58368);
    assert_eq!(m.state(K), Some(0));
}

/// Normal at T0 + 2 WAIT (frozen at T0 + 22, promoted on the first call after T0 + 22 + WAIT).
fn normal(m: &mut Model) -> u64 {
    converged(m);
    let t = T0 + 2 * WAIT;
    let ev = one_run(m, 1, &program(), t);
    assert!(ev.iter().any(|e| matches!(e, Event::NormalStarted { .. })));
    assert_eq!(m.state(K), Some(PS_NORMAL));
    t
}

#[test]
fn what_a_normal_profile_learns_is_pending_and_still_flagged() {
    let mut m = ebpfh(40, 30);
    let t = normal(&mut m);
    let mut with_x = program();
    with_x.insert(60, X);
    // X misses its (absent) row at all 8 distances. The k-th call after X (k = 1..8) misses
    // the pair with X at distance k and, because X shifted the period-3 program by one, every
    // pair at the distances beyond k: 1 + (8 - k) misses. 9 anomalous calls, 9 new pair sets,
    // now pending.
    let ev = one_run(&mut m, 1, &with_x, t + 1);
    assert_eq!(anomalies(&ev), vec![8, 8, 7, 6, 5, 4, 3, 2, 1]);
    let p = m.profile(K).unwrap();
    assert_eq!(p.life.pending, 9);
    assert_eq!(p.test.get(s(X), s(C)), 0, "not tested yet");
    assert_ne!(p.train.get(s(X), s(C)), 0, "but learned");
    // The same run again is flagged again: running once did not launder it.
    let ev = one_run(&mut m, 1, &with_x, t + 2);
    assert_eq!(anomalies(&ev).len(), 9);
    // The operator accepts: now it is normal behaviour.
    m.accept(K).unwrap();
    assert_eq!(life(&m).pending, 0);
    assert_eq!(
        anomalies(&one_run(&mut m, 1, &with_x, t + 3)),
        Vec::<u16>::new()
    );
    assert_eq!(m.accept(K), Err(CommandError::NothingPending(K)));
}

#[test]
fn pending_pairs_are_accepted_after_eight_runs_that_show_them_again() {
    // tolerize_limit 40: minor LFC 20, and X's run reaches LFC 9.
    let mut m = ebpfh(40, 30);
    let t = normal(&mut m);
    let mut with_x = program();
    with_x.insert(60, X);
    // The run that learns X shows nothing again: it does not count.
    one_run(&mut m, 1, &with_x, t + 1);
    assert_eq!((life(&m).pending, life(&m).repeat_runs), (9, 0));
    // Ordinary runs, however many, do not accept it: waiting launders nothing.
    for i in 2..=30 {
        one_run(&mut m, 1, &program(), t + i);
    }
    assert_eq!((life(&m).pending, life(&m).repeat_runs), (9, 0));
    // Each later run with X is anomalous (9 calls, LFC 9 <= 20) and learns nothing: it counts.
    for i in 1..=7 {
        let ev = one_run(&mut m, 1, &with_x, t + 30 + i);
        assert_eq!(anomalies(&ev).len(), 9);
    }
    assert_eq!((life(&m).pending, life(&m).repeat_runs), (9, 7));
    let ev = one_run(&mut m, 1, &with_x, t + 38);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::PendingAccepted { pending: 9, .. })),
        "{ev:?}"
    );
    assert_eq!((life(&m).pending, life(&m).repeat_runs), (0, 0));
    assert_ne!(m.profile(K).unwrap().test.get(s(X), s(C)), 0);
    assert_eq!(
        anomalies(&one_run(&mut m, 1, &with_x, t + 39)),
        Vec::<u16>::new()
    );
}

#[test]
fn a_burst_taints_and_pending_pairs_then_wait_for_the_operator() {
    // tolerize_limit 12: minor LFC 6; X's run reaches LFC 9 > 6.
    let mut m = ebpfh(12, 30);
    let t = normal(&mut m);
    let mut with_x = program();
    with_x.insert(60, X);
    one_run(&mut m, 1, &with_x, t + 1);
    assert!(m.profile(K).unwrap().tainted());
    // A program ending in X: one anomalous call (LFC 1), one more pending pair set on its
    // first run, then minor runs that show pending pairs again, which a tainted profile does
    // not count.
    let mut x_at_end = program();
    x_at_end.push(X);
    for i in 2..=20 {
        let ev = one_run(&mut m, 1, &x_at_end, t + i);
        assert_eq!(anomalies(&ev).len(), 1);
    }
    // X at the end follows the same 8 calls as X at 60, so its pair set is pending already.
    assert_eq!(
        (life(&m).pending, life(&m).repeat_runs),
        (9, 0),
        "a tainted profile counts no runs toward acceptance"
    );
    m.accept(K).unwrap();
    let p = m.profile(K).unwrap();
    assert!(!p.tainted());
    assert_ne!(p.test.get(s(X), s(C)), 0);
}

#[test]
fn the_tolerize_limit_acts_once_per_crossing() {
    let mut m = ebpfh(4, 1000);
    let t = normal(&mut m);
    // 40 new calls X Y Z W ... in a row keep the LFC above 4 for a long stretch.
    m.exec(1, K, t + 1);
    let ev = run(&mut m, 1, &[X, Y, Z, W].repeat(10), t + 1);
    let tol = ev
        .iter()
        .filter(|e| matches!(e, Event::TolerizeLimit { .. }))
        .count();
    assert_eq!(tol, 1, "one event for one crossing");
    let p = m.profile(K).unwrap();
    assert!(p.tainted());
    // A fresh task: its k-th call (k <= 8) pairs with EMPTY, so is new; calls 9-12 are the
    // first whose windows hold no EMPTY; from call 13 on each window repeats call k-4's. So
    // calls 1-12 are new pair sets. The crossing (the 5th anomalous call, LFC 5 > 4) dropped
    // calls 1-5's; calls 6-12 are pending again. No reset on every call zeroed anything.
    assert_eq!(p.life.pending, 7);
    assert!(p.train.pairs() > p.test.pairs());
    assert_ne!(p.train.get(s(A), s(C)), 0);
    assert_eq!(p.anomalies, 40, "every anomalous call counted, none zeroed");
}

#[test]
fn under_ph_the_tolerize_limit_resets_training_on_every_call_above_it() {
    let mut m = Model::new(Settings {
        tolerize_limit: 4,
        anomaly_limit: 1000,
        lifecycle: Lifecycle::Ph,
        ..Settings::default()
    });
    m.exec(1, K, T0);
    run(&mut m, 1, &program(), T0);
    m.normalize(K).unwrap();
    let ev = run(&mut m, 1, &[X, Y, Z, W].repeat(10), T0 + 1);
    let p = m.profile(K).unwrap();
    // Above the limit from the 5th call to the last: the last call's reset leaves nothing.
    assert_eq!((p.train.pairs(), p.sequences, p.anomalies), (0, 0, 0));
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::TolerizeLimit { .. }))
            .count(),
        1
    );
}

#[test]
fn the_budget_counts_anomalous_runs_not_calls() {
    let mut m = ebpfh(1000, 2);
    let t = normal(&mut m);
    // One run with 40 anomalous calls costs one unit of the budget of 2.
    let mut burst = program();
    burst.splice(60..60, [X, Y, Z, W].repeat(10));
    let ev = one_run(&mut m, 1, &burst, t + 1);
    assert_eq!(anomalies(&ev).len(), 40 + 8);
    assert_eq!(life(&m).budget, 1);
    assert_eq!(m.state(K).unwrap() & PS_NORMAL, PS_NORMAL);
    one_run(&mut m, 1, &burst, t + 2);
    assert_eq!(life(&m).budget, 2);
    // The third anomalous run in the window makes 3 > 2: normal monitoring stops at its first
    // anomaly, the training data goes back to the testing data, novelty starts over.
    let ev = one_run(&mut m, 1, &burst, t + 3);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::NormalStopped {
            reason: StopReason::AnomalyLimit,
            ..
        }
    )));
    let p = m.profile(K).unwrap();
    assert_eq!(p.state & PS_NORMAL, 0);
    assert_eq!(p.life.pending, 0);
    // Novelty restarted at 65536 at the stop. The stopping run had anomalies, so the rest of the
    // burst taught the (now training) profile nothing: the run ended clean, 65536 - 8192, and
    // the training data is the testing data, without the burst.
    assert_eq!(p.life.novelty, 57344);
    assert_eq!(p.life.budget, 0);
    assert_eq!(p.train.get(s(X), s(C)), 0);
    assert!(p.train == p.test);
    // A later clean run of the burst, in training, learns it as training does.
    one_run(&mut m, 2, &burst, t + 4);
    assert_ne!(m.profile(K).unwrap().train.get(s(X), s(C)), 0);
}

#[test]
fn the_budget_starts_over_every_normal_wait() {
    let mut m = ebpfh(1000, 1);
    let t = normal(&mut m);
    let mut with_x = program();
    with_x.insert(60, X);
    one_run(&mut m, 1, &with_x, t + 1);
    assert_eq!(life(&m).budget, 1);
    assert_eq!(life(&m).budget_time, t + 1);
    // More than normal_wait later: a new window, the count is 1 again, nothing stops.
    one_run(&mut m, 1, &with_x, t + 2 + WAIT);
    assert_eq!((life(&m).budget, life(&m).budget_time), (1, t + 2 + WAIT));
    assert_eq!(m.state(K), Some(PS_NORMAL));
    // Within that window, a second anomalous run: 2 > 1.
    one_run(&mut m, 1, &with_x, t + 3 + WAIT);
    assert_eq!(m.state(K).unwrap() & PS_NORMAL, 0);
}

#[test]
fn accept_is_refused_for_a_profile_that_is_not_normal() {
    let mut m = ebpfh(12, 30);
    one_run(&mut m, 1, &program(), T0);
    assert_eq!(m.accept(K), Err(CommandError::NotNormal(K)));
    assert_eq!(m.accept(K2), Err(CommandError::NoProfile(K2)));
}

#[test]
fn a_normal_profile_never_refreezes_by_itself_under_ebpfh() {
    // pH re-freezes a normal profile and re-normalizes it on what it learned meanwhile.
    let mut m = ebpfh(40, 30);
    let t = normal(&mut m);
    let mut with_x = program();
    with_x.insert(60, X);
    one_run(&mut m, 1, &with_x, t + 1);
    // Tainted? No (LFC 9 <= 20); but with only 3 more runs (not 8) nothing is accepted, and a
    // long quiet time does not freeze a normal profile.
    for i in 2..=4 {
        one_run(&mut m, 1, &program(), t + 3 * WAIT + i);
    }
    assert_eq!(m.state(K), Some(PS_NORMAL));
    assert_eq!(m.profile(K).unwrap().test.get(s(X), s(C)), 0);
}

// ---- launch stubs: runs that began at a fork and end at an exec -----------------------------

/// Task `parent` (running `K`, its window ending in `program()`'s context) forks `child`, which
/// makes `ids` and then execs `K2`: a launch stub of `K` unless `ids` taught it something.
fn stub(m: &mut Model, parent: u32, child: u32, ids: &[i64], now: u64) -> Vec<Event> {
    m.fork(parent, child);
    let mut ev = run(m, child, ids, now);
    ev.extend(m.exec(child, K2, now));
    ev
}

#[test]
fn a_launch_stub_that_taught_nothing_is_no_run() {
    let mut m = ebpfh(12, 30);
    one_run(&mut m, 1, &program(), T0 + 1);
    one_run(&mut m, 1, &program(), T0 + 2);
    assert_eq!((life(&m).novelty, life(&m).runs), (57344, 2));
    // Task 3 runs K; its children continue its window, so A, B, C teach nothing.
    m.exec(3, K, T0 + 3);
    run(&mut m, 3, &program(), T0 + 3);
    for child in 4..=13 {
        stub(&mut m, 3, child, &[A, B, C], T0 + 3);
    }
    assert_eq!(
        (life(&m).novelty, life(&m).runs),
        (57344, 2),
        "stubs move nothing"
    );
    // A forked child that exits without exec is a real run: 57344 - 7168 = 50176.
    m.fork(3, 14);
    run(&mut m, 14, &[A, B, C], T0 + 3);
    m.exit(14, T0 + 3);
    assert_eq!((life(&m).novelty, life(&m).runs), (50176, 2 + 1));
    // A stub that learned a pair is a novel run: 50176 - 6272 + 8192 = 52096.
    stub(&mut m, 3, 15, &[X], T0 + 3);
    assert_eq!((life(&m).novelty, life(&m).runs), (52096, 4));
    // The exec'd image's run (K2's) is a run of K2 like any other.
    run(&mut m, 15, &[A], T0 + 3);
    m.exit(15, T0 + 3);
    assert_eq!(m.profile(K2).unwrap().life.runs, 1);
}

#[test]
fn launch_stubs_never_freeze_a_profile_but_forked_workers_do() {
    let mut m = ebpfh(12, 30);
    // One novel run of 1200 calls: past the 1024 a freeze needs, novelty 65536.
    m.exec(1, K, T0);
    run(&mut m, 1, &program().repeat(10), T0);
    m.fork(1, 2);
    m.exit(1, T0);
    assert_eq!(life(&m).novelty, 65536);
    // Task 2 (a forked copy of 1's window) launches 100 children: a make, a shell.
    for child in 100..200 {
        stub(&mut m, 2, child, &[A, B, C], T0 + 1);
    }
    assert_eq!((life(&m).novelty, m.state(K)), (65536, Some(0)));
    // 20 workers that exit without exec: 4539, still training; the 21st: 3972 < 4096, frozen
    // (the arithmetic of `novelty_decays_by_an_eighth_per_clean_run_and_freezes_below_a_sixteenth`).
    for child in 200..220 {
        m.fork(2, child);
        run(&mut m, child, &[A, B, C], T0 + 2);
        m.exit(child, T0 + 2);
    }
    assert_eq!((life(&m).novelty, m.state(K)), (4539, Some(0)));
    m.fork(2, 220);
    run(&mut m, 220, &[A, B, C], T0 + 2);
    m.exit(220, T0 + 2);
    assert_eq!((life(&m).novelty, m.state(K)), (3972, Some(PS_FROZEN)));
}

/// A normal profile at `t` with X's pending pairs (LFC 9, untainted under tolerize limits of 18
/// and up), and task 7 running `K` with its window in `program()`'s context.
fn normal_with_pending(m: &mut Model) -> u64 {
    let t = normal(m);
    let mut with_x = program();
    with_x.insert(60, X);
    one_run(m, 1, &with_x, t + 1);
    assert_eq!((life(m).pending, life(m).repeat_runs), (9, 0));
    assert!(!m.profile(K).unwrap().tainted());
    m.exec(7, K, t + 2);
    run(m, 7, &program(), t + 2);
    t
}

#[test]
fn a_launch_stub_does_not_count_toward_accepting_pending_pairs() {
    let mut m = ebpfh(40, 30);
    let t = normal_with_pending(&mut m);
    // X in the same context as in the run that learned it: 9 anomalies, all pending pairs.
    let again = [&[X][..], &[A, B, C].repeat(3)].concat();
    let ev = stub(&mut m, 7, 8, &again, t + 3);
    assert_eq!(anomalies(&ev).len(), 9);
    assert_eq!((life(&m).pending, life(&m).repeat_runs), (9, 0));
    // The same calls in a worker that exits: a run that showed them again.
    m.fork(7, 9);
    run(&mut m, 9, &again, t + 3);
    m.exit(9, t + 3);
    assert_eq!((life(&m).pending, life(&m).repeat_runs), (9, 1));
}

#[test]
fn a_launch_stub_past_the_minor_lfc_still_taints() {
    // tolerize_limit 18: minor LFC 9. X's first run (LFC 9) does not taint; a stub showing X
    // twice within one locality frame (LFC 18, no new pair, not past the limit) does.
    let mut m = ebpfh(18, 30);
    let t = normal_with_pending(&mut m);
    let twice = [&[X][..], &[A, B, C].repeat(10), &[X], &[A, B, C].repeat(3)].concat();
    let ev = stub(&mut m, 7, 8, &twice, t + 3);
    assert_eq!(anomalies(&ev).len(), 18);
    assert!(!ev.iter().any(|e| matches!(e, Event::TolerizeLimit { .. })));
    assert!(m.profile(K).unwrap().tainted());
    assert_eq!(life(&m).pending, 9);
}
