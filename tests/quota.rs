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
    let status = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(fixture)
        .args(["/usr/bin/true", &n.to_string(), names])
        .status()
        .expect("setpriv runs");
    assert!(status.success(), "the memfd fixture failed as nobody");
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
            Duration::from_secs(10)
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
