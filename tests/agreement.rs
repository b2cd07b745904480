//! The kernel program and the pure model agree bit for bit: real programs run under
//! `ebpfh record`, the recording is replayed through the model, and every profile the kernel
//! ended with (pair tables, counters, state, deadlines) equals the model's.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::*;
use ebpfh::model::{Event, Model, Settings};
use ebpfh::profile::{Profile, ProfileKey, State};
use ebpfh::trace::{self, Record};

/// Records `script` (run pinned to one CPU, so the kernel processed the calls of one profile in
/// the order it recorded them) under `flags` and a normal wait of `normal_wait`, replays the recording through the model, and
/// checks that every profile of `progs` the kernel ended with (pair tables, counters, state,
/// deadlines, the lifecycle block) equals the model's. Returns the model's events, how many
/// of `progs` ended normal, and the model.
fn agree(
    dir: &std::path::Path,
    normal_wait: &str,
    flags: &[&str],
    script: &str,
    progs: &[&std::path::Path],
) -> (Vec<Event>, usize, Model) {
    let out = dir.join("run.ebt");
    let status = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args([
            "record",
            "--normal-wait",
            normal_wait,
            "--trace-bytes",
            "268435456",
        ])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .args(["--", "taskset", "-c", "0", "sh", "-c", script])
        .status()
        .unwrap();
    assert!(status.success(), "ebpfh record failed");

    let mut model = Model::new(Settings::default());
    let mut kernel: BTreeMap<String, Profile> = BTreeMap::new();
    let mut events: Vec<Event> = Vec::new();
    let mut end = None;
    for r in trace::Reader::new(BufReader::new(File::open(&out).unwrap())).unwrap() {
        let r = r.expect("the trace reads back");
        match &r {
            Record::Profile(p) => {
                // A script profile is named by its script, its interpreter by its path.
                let name = if p.key.is_script() { &p.script } else { &p.exe };
                kernel.insert(name.clone(), (**p).clone());
            }
            Record::End { lost, calls } => end = Some((*lost, *calls)),
            _ => trace::feed(&mut model, &r, &mut events),
        }
    }
    let (lost, calls) = end.expect("the trace has its footer");
    assert_eq!(lost, 0, "no record may be lost for an exact comparison");
    assert!(calls > 10_000, "only {calls} calls recorded");

    let mut normal = 0;
    for prog in progs {
        let name = prog.to_str().unwrap();
        let k = kernel
            .get(name)
            .unwrap_or_else(|| panic!("no kernel profile for {name}"));
        let mut m = model
            .profile(k.key)
            .unwrap_or_else(|| panic!("no model profile for {name}"));
        m.exe = k.exe.clone();
        assert_eq!(
            (k.state, k.count, k.train_count, k.last_mod_count, k.sequences, k.anomalies, k.normal_time),
            (m.state, m.count, m.train_count, m.last_mod_count, m.sequences, m.anomalies, m.normal_time),
            "{name}: (state, count, train_count, last_mod_count, sequences, anomalies, normal_time)"
        );
        assert_eq!(k.life, m.life, "{name}: the lifecycle block");
        assert!(
            k.train == m.train,
            "{name}: training pairs differ ({:?} vs {:?})",
            k.train,
            m.train
        );
        assert!(
            k.test == m.test,
            "{name}: testing pairs differ ({:?} vs {:?})",
            k.test,
            m.test
        );
        assert!(
            k.train.pairs() + k.test.pairs() > 0,
            "{name} learned nothing"
        );
        if k.state() == State::Normal {
            normal += 1;
        }
    }
    (events, normal, model)
}

/// Script profiles: a shell script run through #!, as `sh FILE` and as `bash FILE` gets a profile
/// per interpreter; the kernel and the model agree on those too.
#[test]
fn root_kernel_and_model_agree_on_script_profiles() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    let anomaly = build_fixture(&d, "anomaly");
    let work = d.join("work.sh");
    std::fs::write(
        &work,
        "#!/bin/sh\nfor i in 1 2 3; do echo $i; done\ncat /dev/null\n",
    )
    .unwrap();
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (a, w) = (anomaly.display(), work.display());
    let script = format!(
        "for i in $(seq 25); do {a}; {w}; sh {w}; bash {w}; done >/dev/null; sleep 1.5; \
         for i in 1 2 3; do {a}; {w}; done >/dev/null"
    );
    let (_, normal, _) = agree(&d, "1s", &[], &script, &[&anomaly, &work]);
    assert!(normal >= 1, "the comparison must cover a normal profile");
}

fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

/// The profile key of a program file.
fn key_of(prog: &std::path::Path) -> ProfileKey {
    let m = std::fs::metadata(prog).unwrap();
    ProfileKey::from_stat(m.dev(), m.ino())
}

#[test]
fn root_kernel_and_model_agree_bit_for_bit_under_phs_lifecycle() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let anomaly = build_fixture(dir.path(), "anomaly");
    let forker = build_fixture(dir.path(), "forker");
    let sighandler = build_fixture(dir.path(), "sighandler");
    let (a, f, s) = (anomaly.display(), forker.display(), sighandler.display());
    // Train all three, wait out the normal wait, then run normal and anomalous variants.
    let script = format!(
        "for i in $(seq 25); do {a}; {f}; {s}; done >/dev/null; sleep 1.5; \
         for i in 1 2 3; do {a}; {f}; {s}; done >/dev/null; {a} 40 >/dev/null; {f} x >/dev/null; {s}"
    );
    let (events, normal, _) = agree(
        dir.path(),
        "1s",
        &["--lifecycle", "ph"],
        &script,
        &[&anomaly, &forker, &sighandler],
    );
    assert!(
        normal >= 2,
        "the comparison must cover normal profiles, not only training"
    );
    assert!(
        count(&events, |e| matches!(e, Event::Anomaly { .. })) > 0,
        "the backdoor runs must have been anomalous in the replay too"
    );
    // `anomaly 40` drives its LFC past the tolerize limit: the reset path is compared too.
    assert!(count(&events, |e| matches!(e, Event::TolerizeLimit { .. })) > 0);
}

/// The default lifecycle, through every path it adds: freezing on runs (and on a quiet wait),
/// a frozen profile learning a rare new run, pending pairs accepted after runs that show them
/// again, a burst past the tolerize limit acting once per crossing and tainting, and a budget of
/// anomalous runs that stops normal monitoring.
#[test]
fn root_kernel_and_model_agree_bit_for_bit_under_the_default_lifecycle() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let anomaly = build_fixture(dir.path(), "anomaly");
    let burst = build_fixture(dir.path(), "burst");
    let forker = build_fixture(dir.path(), "forker");
    let sighandler = build_fixture(dir.path(), "sighandler");
    let (a, b, f, s) = (
        anomaly.display(),
        burst.display(),
        forker.display(),
        sighandler.display(),
    );
    // 40 training runs give the small programs the 1024 calls a freeze needs; `{b} 1` once at
    // the end is a new run of a profile that froze on its runs. After the normal wait: `{a} 1`
    // nine times (a small anomaly, learned once, then shown again eight times: accepted), and
    // `{b} 40` 32 times (each past the tolerize limit once; 31 anomalous runs exceed the budget
    // of 30, if they fall into one budget window: a normal wait, 5 s, long enough for an
    // emulated CPU too).
    let script = format!(
        "for i in $(seq 40); do {a}; {b}; {f}; {s}; done >/dev/null; {b} 1 >/dev/null; sleep 5.5; \
         for i in 1 2 3; do {a}; {b}; {f}; {s}; done >/dev/null; \
         for i in $(seq 9); do {a} 1; done >/dev/null; \
         for i in $(seq 32); do {b} 40; done >/dev/null; {f} x >/dev/null; {s}"
    );
    let (events, normal, _) = agree(
        dir.path(),
        "5s",
        &[],
        &script,
        &[&anomaly, &burst, &forker, &sighandler],
    );
    assert!(
        normal >= 2,
        "the comparison must cover normal profiles, not only training"
    );
    // Each about the program it is meant for: the recorded tree also runs sh, seq and sleep,
    // whose profiles have a lifecycle of their own (and on a slow machine, such as an emulated
    // CPU, the shell's can turn normal and cross the tolerize limit too).
    let (a_key, b_key) = (key_of(&anomaly), key_of(&burst));
    assert!(
        count(&events, |e| matches!(e, Event::PendingAccepted { .. })
            && e.key() == a_key)
            > 0,
        "no pending pairs of `anomaly` were accepted"
    );
    let tolerized: Vec<u32> = events
        .iter()
        .filter(|e| matches!(e, Event::TolerizeLimit { .. }) && e.key() == b_key)
        .map(Event::tid)
        .collect();
    let runs: std::collections::BTreeSet<_> = tolerized.iter().collect();
    assert!(
        (1..=32).contains(&tolerized.len()) && runs.len() == tolerized.len(),
        "{} tolerize events of `burst` in {} runs: one per run of `burst 40` at most",
        tolerized.len(),
        runs.len()
    );
    assert!(
        count(&events, |e| matches!(e, Event::NormalStopped { .. })
            && e.key() == b_key)
            > 0,
        "the budget never stopped normal monitoring of `burst`"
    );
}

/// Launch stubs under the default lifecycle: a shell (a copy, so its profile is the test's
/// alone) forks children that exec programs (launch stubs of the shell's profile: no runs),
/// and children that exit without exec (`$(echo)` subshells: runs); kernel and model agree on
/// the shell's profile, lifecycle block included.
#[test]
fn root_kernel_and_model_agree_on_launch_stubs() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    let anomaly = build_fixture(&d, "anomaly");
    let shell = d.join("shell");
    std::fs::copy("/bin/dash", &shell).expect("dash is installed");
    let (a, sh) = (anomaly.display(), shell.display());
    // 3 shells x (80 `anomaly` + 1 `seq` launched, 80 subshells that exit): enough calls for
    // `agree` on a guest whose dash makes fewer than the host's.
    let script = format!(
        "for j in 1 2 3; do {sh} -c 'for i in $(seq 80); do {a}; x=$(echo $i); done'; done >/dev/null"
    );
    let (_, _, model) = agree(&d, "1h", &[], &script, &[&anomaly, &shell]);
    let runs = model.profile(key_of(&shell)).unwrap().life.runs;
    // 3 shells and 240 subshells end runs; of the 243 launch stubs only those that taught the
    // shell something new count (a handful at first).
    assert!(
        (243..243 + 30).contains(&runs),
        "{runs} runs of the shell: launch stubs must not count"
    );
}

/// `ebpfh replay` scores real recordings: trained on normal runs of a program, it flags the run
/// with the backdoor and not a new normal run.
#[test]
fn root_replay_scores_real_recordings() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let p = prog.display();
    let record = |name: &str, script: &str| {
        let out = dir.path().join(name);
        let status = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
            .args(["record", "-o"])
            .arg(&out)
            .args(["--", "sh", "-c", script])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        out
    };
    let train = record("train.ebt", &format!("for i in 1 2 3 4 5; do {p}; done"));
    let normal = record("normal.ebt", &format!("{p}; {p}"));
    let attack = record("attack.ebt", &format!("{p} backdoor"));
    let out = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .arg("replay")
        .arg("--train")
        .arg(&train)
        .arg("--normal")
        .arg(&normal)
        .arg("--attack")
        .arg(&attack)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sets = &report["sets"];
    assert_eq!(
        sets["normal"]["anomalous_calls"], 0,
        "a new normal run raised anomalies: {report}"
    );
    assert_eq!(
        sets["attack"]["flagged"]["any_anomaly"], 1,
        "the backdoor run was not flagged: {report}"
    );
    assert!(sets["attack"]["anomalous_calls"].as_u64() > Some(0));
    assert_eq!(report["auc"]["anomalous_calls"], 1.0);
    let trained = report["training"]["profiles"].as_array().unwrap();
    assert!(
        trained.iter().any(|t| t["exe"] == prog.to_str().unwrap()),
        "{report}"
    );
}
