//! Fuzz targets for everything ebpfh parses from outside: profile files, `.ebt` recordings,
//! strace / pid-nr / ADFA traces and control-socket requests.
//!
//! Each target runs for `FUZZ_SECONDS` (default 1, so a plain `cargo test` stays quick; `make
//! fuzz` and CI give more). Inputs are proptest-generated: random bytes, and valid seed inputs
//! (a real encoded profile, a real recording, the fixture traces, every request kind) mutated by
//! byte flips, insertions, deletions, truncations and duplicated chunks. proptest shrinks a
//! failing input to a small one; it is written to `target/fuzz-crashes/<target>/` and printed,
//! and belongs in `tests/fuzz-regressions/<target>/` once fixed: every file there is replayed
//! first, on every run. Why proptest and not a coverage-guided fuzzer: see the README.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ebpfh::control::protocol::{self, Op, Request, Target};
use ebpfh::profile::{Profile, ProfileKey, PS_FROZEN};
use ebpfh::replay::formats;
use ebpfh::syscalls::Abi;
use ebpfh::trace::{self, Record};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs.max(0.0))
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One mutation of a seed: (kind, where, byte).
type Mutation = (u8, prop::sample::Index, u8);

fn mutate(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for (kind, at, byte) in muts {
        let len = bytes.len();
        match kind % 5 {
            0 if len > 0 => bytes[at.index(len)] ^= byte | 1,
            1 => bytes.insert(at.index(len + 1), *byte),
            2 if len > 0 => {
                bytes.remove(at.index(len));
            }
            3 => bytes.truncate(at.index(len + 1)),
            4 if len > 0 => {
                let from = at.index(len);
                let n = usize::from(*byte).min(len - from);
                let chunk = bytes[from..from + n].to_vec();
                bytes.splice(from..from, chunk);
            }
            _ => {}
        }
    }
    bytes
}

/// Random bytes, or one of `seeds` with a few mutations.
fn inputs(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let n = seeds.len();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..600),
        6 => (0..n, prop::collection::vec(any::<Mutation>(), 0..6))
            .prop_map(move |(i, muts)| mutate(seeds[i].clone(), &muts)),
    ]
    .boxed()
}

/// Replays the kept regressions, then fuzzes `check` until the budget is spent.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, check: impl Fn(&[u8])) {
    let kept = manifest().join("tests/fuzz-regressions").join(name);
    if let Ok(entries) = std::fs::read_dir(&kept) {
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            check(&std::fs::read(&f).unwrap());
        }
    }
    for s in &seeds {
        check(s);
    }
    let strategy = inputs(seeds);
    let end = Instant::now() + budget();
    let mut cases = 0u64;
    while Instant::now() < end {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_le_bytes();
        let config = Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed, seed].concat());
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&strategy, |bytes| {
            check(&bytes);
            Ok(())
        });
        cases += 256;
        if let Err(TestError::Fail(why, bytes)) = result {
            let dir = manifest().join("target/fuzz-crashes").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("crash-{}", u128::from_le_bytes(seed)));
            std::fs::write(&file, &bytes).unwrap();
            panic!(
                "fuzz target {name} failed ({why}) on {} bytes, kept in {}: {bytes:02x?}",
                bytes.len(),
                file.display()
            );
        }
    }
    eprintln!("fuzz target {name}: {cases} inputs in {:?}", budget());
}

fn sample_profile() -> Profile {
    let mut p = Profile {
        key: ProfileKey::file(66307, 42).with_script(9),
        exe: "/usr/bin/bash".into(),
        script: "/usr/local/bin/x.sh".into(),
        owner: 1000,
        state: PS_FROZEN,
        count: 1234,
        train_count: 1000,
        last_mod_count: 10,
        sequences: 77,
        anomalies: 3,
        normal_time: 1_900_000_000_000_000_000,
        ..Profile::default()
    };
    let mut row = Box::new([0u8; ebpfh::syscalls::NSYMBOLS]);
    row[0] = 1;
    row[59] = 0x81;
    p.train.rows.insert(0, row.clone());
    p.train.rows.insert(59, row.clone());
    p.test.rows.insert(3, row);
    p
}

#[test]
fn fuzz_profile_decoder() {
    let seeds = vec![
        ebpfh::store::encode(&sample_profile()),
        ebpfh::store::encode(&Profile::default()),
    ];
    fuzz("profile", seeds, |bytes| {
        // What decodes must encode to a file that decodes to the same profile.
        if let Ok(p) = ebpfh::store::decode(bytes) {
            let again = ebpfh::store::decode(&ebpfh::store::encode(&p)).expect("re-encoded");
            assert_eq!(again, p);
        }
    });
}

fn sample_ebt() -> Vec<u8> {
    let key = ProfileKey::file(1, 2).with_script(3);
    let mut w = trace::Writer::new(Vec::new(), Abi::X86_64, 1_000).unwrap();
    let records = [
        Record::Settings {
            normal_wait_ns: 5,
            normal_factor: 128,
            normal_factor_den: 32,
            anomaly_limit: 30,
            tolerize_limit: 12,
            lifecycle: 0,
        },
        Record::Exe {
            key,
            path: "/bin/sh".into(),
            script: "/bin/x.sh".into(),
        },
        Record::Exec {
            tid: 7,
            tgid: 7,
            key,
            time: 1_001,
        },
        Record::Call {
            tid: 7,
            nr: 59,
            time: 1_002,
        },
        Record::Fork {
            child: 8,
            tgid: 8,
            parent: 7,
            time: 1_003,
        },
        Record::Signal {
            tid: 8,
            time: 1_004,
        },
        Record::Sigreturn {
            tid: 8,
            time: 1_005,
        },
        Record::Exit {
            tid: 8,
            time: 1_006,
        },
        Record::Profile(Box::new(sample_profile())),
        Record::Exit {
            tid: 7,
            time: 1_007,
        },
    ];
    for r in &records {
        w.write(r).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn fuzz_ebt_reader() {
    fuzz("ebt", vec![sample_ebt()], |bytes| {
        if let Ok(reader) = trace::Reader::new(Cursor::new(bytes)) {
            // A record is at least a few bytes: more results than bytes would be a loop.
            let n = reader.take(bytes.len() + 2).count();
            assert!(
                n <= bytes.len() + 1,
                "{n} records from {} bytes",
                bytes.len()
            );
        }
    });
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(manifest().join("tests/fixtures/replay").join(rel)).unwrap()
}

#[test]
fn fuzz_strace_parser() {
    let seeds = vec![
        fixture("strace-f-o.txt"),
        fixture("strace-tty-tt.txt"),
        b"123 execve(\"/bin/sh\", [\"sh\"], 0x0 /* 1 var */) = 0\n123 clone(child_stack=NULL, flags=CLONE_THREAD) = 124\n124 rt_sigaction(SIGINT, {sa_handler=0x1}, NULL, 8) = 0\n124 --- SIGINT {si_signo=SIGINT} ---\n124 rt_sigreturn({mask=[]}) = 0\n124 read(0, <unfinished ...>\n123 <... read resumed>\"\", 1) = 0\n124 +++ exited with 0 +++\n".to_vec(),
    ];
    fuzz("strace", seeds, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        for abi in [Abi::X86_64, Abi::I386, Abi::Aarch64] {
            formats::parse_strace(&text, abi, &mut |_| {});
        }
    });
}

#[test]
fn fuzz_pid_nr_parser() {
    fuzz("pid-nr", vec![fixture("unm.txt")], |bytes| {
        let _ = formats::parse_pid_nr(bytes, Abi::X86_64, &mut |_| {});
    });
}

#[test]
fn fuzz_adfa_parser() {
    let seeds = vec![fixture("adfa/Training_Data_Master/UTD-0001.txt")];
    fuzz("adfa", seeds, |bytes| {
        let _ = formats::parse_adfa(bytes, Abi::X86_64, &mut |_| {});
    });
}

#[test]
fn fuzz_control_request_parser() {
    let requests = [
        Request::Status,
        Request::Processes { threads: true },
        Request::Profiles,
        Request::Profile {
            target: Target::Profile("/usr/bin/ls".into()),
        },
        Request::Command {
            op: Op::Normalize,
            target: Target::Pid(42),
        },
        Request::Set {
            setting: "normal_wait".into(),
            value: "10m".into(),
        },
        Request::Save,
        Request::Snapshot { threads: false },
        Request::EventStream,
    ];
    let seeds = requests
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    fuzz("request", seeds, |bytes| {
        let line = String::from_utf8_lossy(bytes);
        match protocol::parse_request(&line) {
            // What parses must survive the trip back to a line unchanged.
            Ok(req) => {
                let again = serde_json::to_string(&req).unwrap();
                assert_eq!(protocol::parse_request(&again), Ok(req));
            }
            Err(e) => assert!(
                !e.chars().any(char::is_control),
                "the sentence has no control characters: {e:?}"
            ),
        }
    });
}
