//! Root integration tests for fleet profiles: content identity, export, import and merge, with the
//! real `ebpfh` binary, the real kernel program and real programs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `sha256sum FILE`: an implementation independent of ebpfh's.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A new profile is hashed once in userspace; the digest is in `profile_created`, `profiles
/// --json`, `profile show`, and kept on disk across a restart.
#[test]
fn root_profiles_carry_the_executables_sha256() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prog = build_fixture(dir.path(), "anomaly");
    let key = stat_key(&prog);
    let digest = sha256sum(&prog);

    let mut mon = Monitor::start(dir.path(), &state, &[]);
    run(&prog, &[]);
    let created = mon
        .wait_for(
            "profile_created",
            |e| e["profile"] == key,
            Duration::from_secs(10),
        )
        .expect("a profile_created line for the program");
    assert_eq!(created["sha256"], digest.as_str());
    assert_eq!(created["exe"], prog.to_str().unwrap());

    let rows = mon.client_json(&["profiles"]);
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["profile"] == key)
        .expect("the program's profile is listed");
    assert_eq!(row["sha256"], digest.as_str());
    let shown = mon.client(&["profile", "show", prog.to_str().unwrap()]);
    assert!(shown.status.success());
    let text = String::from_utf8(shown.stdout).unwrap();
    assert!(
        text.contains(&format!("sha256         {digest}\n")),
        "{text}"
    );
    mon.stop();

    let saved = ebpfh::store::Store::open(&state)
        .unwrap()
        .load_all()
        .profiles
        .into_iter()
        .find(|p| p.key.to_string() == key)
        .expect("the profile was saved");
    assert_eq!(
        saved.identity.map(|i| i.sha256.to_string()),
        Some(digest.clone())
    );

    // After a restart the digest comes from the file, even though the program does not run.
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let mon = Monitor::start(&again, &state, &[]);
    let rows = mon.client_json(&["profiles"]);
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["profile"] == key)
        .unwrap();
    assert_eq!(row["sha256"], digest.as_str());
}
