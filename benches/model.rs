//! Throughput of the pH model's hot path: calls per second on one core, training and testing.
//!
//! Run with `cargo bench --bench model`. The trace is synthetic but shaped like a server: a
//! dynamic-loader prologue, then an event loop whose branches a fixed-seed generator picks, about
//! 40 distinct calls in all, so rows are reused the way a real program reuses them.

use std::hint::black_box;
use std::time::Instant;

use ebpfh::model::{Event, Model, Settings};
use ebpfh::profile::ProfileKey;

/// Calls per measured run.
const CALLS: usize = 20_000_000;
const RUNS: usize = 5;

/// x86_64 numbers; only their identity matters to the model.
mod nr {
    pub const READ: i64 = 0;
    pub const WRITE: i64 = 1;
    pub const CLOSE: i64 = 3;
    pub const FSTAT: i64 = 5;
    pub const POLL: i64 = 7;
    pub const LSEEK: i64 = 8;
    pub const MMAP: i64 = 9;
    pub const MPROTECT: i64 = 10;
    pub const MUNMAP: i64 = 11;
    pub const BRK: i64 = 12;
    pub const RT_SIGACTION: i64 = 13;
    pub const RT_SIGPROCMASK: i64 = 14;
    pub const IOCTL: i64 = 16;
    pub const PREAD64: i64 = 17;
    pub const ACCESS: i64 = 21;
    pub const MADVISE: i64 = 28;
    pub const GETPID: i64 = 39;
    pub const SENDTO: i64 = 44;
    pub const RECVFROM: i64 = 45;
    pub const SOCKET: i64 = 41;
    pub const CONNECT: i64 = 42;
    pub const ACCEPT4: i64 = 288;
    pub const SETSOCKOPT: i64 = 54;
    pub const FCNTL: i64 = 72;
    pub const GETUID: i64 = 102;
    pub const GETEUID: i64 = 107;
    pub const ARCH_PRCTL: i64 = 158;
    pub const GETTID: i64 = 186;
    pub const FUTEX: i64 = 202;
    pub const SET_TID_ADDRESS: i64 = 218;
    pub const CLOCK_GETTIME: i64 = 228;
    pub const EPOLL_WAIT: i64 = 232;
    pub const EPOLL_CTL: i64 = 233;
    pub const OPENAT: i64 = 257;
    pub const NEWFSTATAT: i64 = 262;
    pub const SET_ROBUST_LIST: i64 = 273;
    pub const EPOLL_CREATE1: i64 = 291;
    pub const PRLIMIT64: i64 = 302;
    pub const GETRANDOM: i64 = 318;
    pub const RSEQ: i64 = 334;
}

/// A fixed-seed xorshift, so every run replays the same trace.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn trace(len: usize) -> Vec<i64> {
    use nr::*;
    let mut t = vec![
        BRK,
        ARCH_PRCTL,
        MMAP,
        ACCESS,
        OPENAT,
        NEWFSTATAT,
        MMAP,
        CLOSE,
        OPENAT,
        READ,
        PREAD64,
        NEWFSTATAT,
        MMAP,
        MPROTECT,
        MMAP,
        MMAP,
        CLOSE,
        MMAP,
        ARCH_PRCTL,
        SET_TID_ADDRESS,
        SET_ROBUST_LIST,
        RSEQ,
        MPROTECT,
        PRLIMIT64,
        MUNMAP,
        GETRANDOM,
        BRK,
        BRK,
        GETUID,
        GETEUID,
        RT_SIGACTION,
        RT_SIGACTION,
        RT_SIGPROCMASK,
        SOCKET,
        SETSOCKOPT,
        FCNTL,
        EPOLL_CREATE1,
        EPOLL_CTL,
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    while t.len() < len {
        t.extend([EPOLL_WAIT, CLOCK_GETTIME]);
        match rng.below(8) {
            0..=3 => {
                // A request: read it, maybe serve a file, answer in pieces.
                t.extend([ACCEPT4, FCNTL, EPOLL_CTL, RECVFROM]);
                if rng.below(2) == 0 {
                    t.extend([OPENAT, FSTAT, LSEEK, READ, READ, CLOSE]);
                }
                let pieces = 1 + rng.below(3) as usize;
                t.extend(std::iter::repeat_n(SENDTO, pieces));
                t.extend([EPOLL_CTL, CLOSE]);
            }
            4 | 5 => {
                for _ in 0..=rng.below(4) {
                    t.extend([READ, WRITE]);
                }
            }
            6 => t.extend([FUTEX, GETTID, FUTEX, MADVISE]),
            _ => t.extend([POLL, IOCTL, GETPID, CONNECT, WRITE, POLL, READ, CLOSE]),
        }
    }
    t.truncate(len);
    t
}

const TID: u32 = 1000;
const KEY: ProfileKey = ProfileKey::file(1, 2);

fn new_model() -> Model {
    // Never promote by itself: the training run must stay in training.
    let mut m = Model::new(Settings {
        normal_wait_ns: u64::MAX / 2,
        ..Settings::default()
    });
    m.exec(TID, KEY, 0);
    m
}

/// Calls per second over `runs` runs of `CALLS` calls: (best, median).
fn measure(model: &mut Model, trace: &[i64], by_value: bool) -> (f64, f64, usize) {
    let mut rates = Vec::new();
    let mut events = 0;
    let mut buf: Vec<Event> = Vec::with_capacity(16);
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut done = 0;
        while done < CALLS {
            for &id in trace {
                if by_value {
                    events += black_box(model.syscall(TID, black_box(id), 0)).len();
                } else {
                    model.syscall_into(TID, black_box(id), 0, &mut buf);
                    events += buf.len();
                    buf.clear();
                }
            }
            done += trace.len();
        }
        rates.push(done as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    (rates[RUNS - 1], rates[RUNS / 2], events)
}

fn report(name: &str, (best, median, events): (f64, f64, usize)) {
    println!(
        "{name:<44} {:>7.1} M calls/s best, {:>7.1} M median ({:.1} ns/call), {events} events",
        best / 1e6,
        median / 1e6,
        1e9 / median
    );
}

fn main() {
    let t = trace(1_000_000);
    let mut distinct = t.clone();
    distinct.sort_unstable();
    distinct.dedup();
    println!(
        "trace: {} calls, {} distinct syscalls; {RUNS} runs of {CALLS} calls each",
        t.len(),
        distinct.len()
    );

    // (a) Training: learn the trace once, then keep training on it (the steady state).
    let mut m = new_model();
    let learn = Instant::now();
    for &id in &t {
        m.syscall(TID, id, 0);
    }
    let p = m.profile(KEY).expect("profile exists");
    println!(
        "first pass (learning): {:.1} M calls/s; {} sequences, {} pairs",
        t.len() as f64 / learn.elapsed().as_secs_f64() / 1e6,
        p.sequences,
        p.train.pairs()
    );
    report("training, syscall_into", measure(&mut m, &t, false));
    report(
        "training, syscall (Vec per call)",
        measure(&mut m, &t, true),
    );

    // (b) Testing: a normal profile tests every call against both tables.
    m.normalize(KEY).expect("trained");
    report(
        "normal (train + test), syscall_into",
        measure(&mut m, &t, false),
    );
    report(
        "normal (train + test), syscall (Vec)",
        measure(&mut m, &t, true),
    );
    let c = m.counters(KEY).expect("profile exists");
    assert_eq!(c.anomalies, 0, "the trained trace must replay cleanly");
}
