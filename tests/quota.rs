//! An unprivileged user cannot blind root's programs by filling the profile table: memfd execs of
//! one name share a profile, a non-root uid has a quota, and the last slots are root's.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs the memfd fixture as `nobody`: `n` fexecve runs of /usr/bin/true from memfds.
fn memfd_runs_as_nobody(fixture: &Path, n: u32, names: &str) {
    memfd_runs_as(65534, fixture, n, names);
}

/// Runs the memfd fixture as `uid` (a user that need not exist): `n` fexecve runs of
/// /usr/bin/true from memfds.
fn memfd_runs_as(uid: u32, fixture: &Path, n: u32, names: &str) {
    let status = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(fixture)
        .args(["/usr/bin/true", &n.to_string(), names])
        .status()
        .expect("setpriv runs");
    assert!(status.success(), "the memfd fixture failed as uid {uid}");
}

/// A root-owned directory others may enter (the users the tests switch to run its fixtures).
fn shared_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    (dir, d)
}

/// The profiles `uid` created according to a monitor's log.
fn created_by(mon: &Monitor, uid: u32) -> usize {
    mon.events_of("profile_created")
        .iter()
        .filter(|e| e["uid"] == uid)
        .count()
}

// Quotas that hold whatever else runs on the machine: the table is large enough that the
// machine's own (root) programs cannot fill it during a test.
const QUOTA: usize = 16;
const TABLE: [&str; 4] = ["--max-profiles", "1024", "--uid-quota", "16"];

/// The profiles a user created before a restart still count against that user's quota.
#[test]
fn root_the_quota_holds_across_a_restart() {
    require_root();
    let (_dir, d) = shared_dir();
    let fixture = build_fixture(&d, "memfd_exec");
    let state = d.join("state");
    let (first, second) = (d.join("first"), d.join("second"));
    fs::create_dir(&first).unwrap();
    fs::create_dir(&second).unwrap();

    let mut mon = Monitor::start(&first, &state, &TABLE);
    memfd_runs_as_nobody(&fixture, 300, "distinct");
    // Stopped first: by then every event is in the log.
    let out = mon.stop();
    assert!(out.status.success(), "{}", mon.stderr_text());
    assert_eq!(
        created_by(&mon, 65534),
        QUOTA,
        "nobody did not fill its quota"
    );
    let saved = ebpfh::store::Store::open(&state)
        .unwrap()
        .load_all()
        .profiles
        .iter()
        .filter(|p| p.owner == 65534)
        .count();
    assert!(saved > 0, "none of nobody's profiles was saved");

    // The same runs again, and as many new names: what was saved is nobody's already.
    let mut mon = Monitor::start(&second, &state, &TABLE);
    memfd_runs_as_nobody(&fixture, 300, "distinct");
    let status = mon.client_json(&["status"]);
    mon.stop();
    let created = created_by(&mon, 65534);
    assert!(
        saved + created <= QUOTA,
        "after the restart nobody created {created} profiles beside its {saved} saved ones, \
         more than its quota of {QUOTA}"
    );
    assert!(
        status["losses"]["quota_refused"].as_u64() > Some(0),
        "nothing was refused after the restart: {status}"
    );
}

/// Each user has a quota of their own: one user's profiles do not use up another's.
#[test]
fn root_two_users_each_have_their_own_quota() {
    require_root();
    let (_dir, d) = shared_dir();
    let fixture = build_fixture(&d, "memfd_exec");
    let mut mon = Monitor::start(&d, &d.join("state"), &TABLE);
    // Uids with no account: the quota is by number.
    memfd_runs_as(40001, &fixture, 300, "distinct");
    memfd_runs_as(40002, &fixture, 300, "distinct");
    mon.stop();
    let (a, b) = (created_by(&mon, 40001), created_by(&mon, 40002));
    // The second user's memfds of the same names are profiles of its own (keyed by uid).
    let anon_b = mon
        .events_of("profile_created")
        .iter()
        .filter(|e| e["profile"].as_str().unwrap().starts_with("anon:40002:"))
        .count();
    assert_eq!((a, b), (QUOTA, QUOTA), "the two users' profiles");
    assert_eq!(anon_b, QUOTA, "the second user's memfd profiles");
}

/// Quotas the table cannot honour are refused before anything starts.
#[test]
fn impossible_quotas_are_refused_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--max-profiles", "64", "--root-reserve", "64"],
            "ebpfh: --root-reserve 64 leaves no profile slot for other users' programs: \
             --max-profiles 64 has 63 slots (slot 0 is never used); use a smaller \
             --root-reserve or a larger --max-profiles",
        ),
        (
            &["--max-profiles", "64", "--root-reserve", "63"],
            "ebpfh: --root-reserve 63 leaves no profile slot",
        ),
        (
            &[
                "--max-profiles",
                "64",
                "--root-reserve",
                "8",
                "--uid-quota",
                "56",
            ],
            "ebpfh: --uid-quota 56 could never stop a user: with --max-profiles 64 and \
             --root-reserve 8, other users' programs can take at most 55 slots in all; use at \
             most 55, or 0 for no limit",
        ),
    ];
    for (args, want) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ebpfh"))
            .args(["--headless", "--log", "-", "--state-dir"])
            .arg(&state)
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A monitor that accepted the options would run until stopped.
        let mut status = None;
        for _ in 0..200 {
            status = child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if status.is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?} was accepted: the monitor started");
        }
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.unwrap().code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!state.exists(), "{args:?} created the state directory");
    }
}

#[test]
fn root_an_unprivileged_user_cannot_fill_the_profile_table() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    let fixture = build_fixture(&d, "memfd_exec");
    let state = d.join("state");
    // 128 slots: nobody may create 16, and the last 16 are root's.
    let mut mon = Monitor::start(&d, &state, &["--max-profiles", "128"]);

    // Fifty runs from memfds of one name: one profile, not fifty.
    memfd_runs_as_nobody(&fixture, 50, "same");
    // Three hundred names: the quota stops them.
    memfd_runs_as_nobody(&fixture, 300, "distinct");

    // A program root runs afterwards still gets its profile.
    let prog = d.join("roots_prog");
    fs::copy("/usr/bin/true", &prog).unwrap();
    run(&prog, &[]);
    let key = stat_key(&prog);
    assert!(
        mon.wait_for(
            "profile_created",
            |e| e["profile"] == key.as_str(),
            CREATED_WAIT
        )
        .is_some(),
        "root's program got no profile after nobody's memfd storm"
    );

    let created = mon.events_of("profile_created");
    let nobodys: Vec<_> = created.iter().filter(|e| e["uid"] == 65534).collect();
    assert!(
        nobodys.len() <= 16,
        "nobody created {} profiles, more than its quota of 16",
        nobodys.len()
    );
    let anon: Vec<_> = nobodys
        .iter()
        .filter(|e| e["profile"].as_str().unwrap().starts_with("anon:65534:"))
        .collect();
    assert!(
        !anon.is_empty(),
        "no memfd profile was created: {nobodys:?}"
    );
    assert!(
        anon[0]["exe"]
            .as_str()
            .unwrap()
            .starts_with("/memfd:payload"),
        "{}",
        anon[0]
    );
    let status = mon.client_json(&["status"]);
    assert!(
        status["losses"]["quota_refused"].as_u64() > Some(0),
        "refusals are not counted: {status}"
    );
    mon.stop();

    // What was saved: nothing near one file per memfd run.
    let files = fs::read_dir(state.join("profiles")).unwrap().count();
    assert!(files < 128, "{files} profile files in the state directory");
}
