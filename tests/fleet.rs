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
        .wait_for("profile_created", |e| e["profile"] == key, CREATED_WAIT)
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

/// Runs `ebpfh ARGS` with no monitor involved (offline subcommands).
fn ebpfh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ebpfh"))
        .args(args)
        .output()
        .expect("the ebpfh binary runs")
}

#[track_caller]
fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "ebpfh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The profiles of a bundle file, as JSON (the part merging must agree on).
fn bundle_profiles(path: &Path) -> serde_json::Value {
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(env["format"], "ebpfh-profiles");
    env["body"]["profiles"].clone()
}

/// Builds a fixture whose bytes no other copy on the machine has (a trailer after the ELF, which
/// the loader ignores): other tests build the same fixtures, and a content identity is shared by
/// every copy of the same bytes, so a bundle would merge theirs in.
fn unique_fixture(dir: &Path, name: &str) -> std::path::PathBuf {
    use std::io::Write;
    let prog = build_fixture(dir, name);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&prog)
        .unwrap();
    writeln!(f, "{}", dir.display()).unwrap();
    prog
}

/// Replaces the file at `path` by a copy of itself: same bytes, new inode (what a package
/// upgrade that reinstalls a binary does).
fn reinstall(path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(path, &tmp).unwrap();
    std::fs::remove_file(path).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The test: trained to normal under one monitor, exported, the executable reinstalled
/// at a new inode, imported under a second monitor with its own state: normal there at once,
/// quiet on normal runs, and the backdoor is flagged. Merging the real bundles is order
/// independent and idempotent.
#[test]
fn root_an_exported_profile_detects_at_once_on_a_new_inode() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = unique_fixture(dir.path(), "anomaly");
    let forker = unique_fixture(dir.path(), "forker");
    let old_key = stat_key(&prog);
    let first_dir = dir.path().join("first");
    std::fs::create_dir(&first_dir).unwrap();
    let state_a = dir.path().join("state-a");
    let mut a = Monitor::start(&first_dir, &state_a, &[]);
    a.train_to_normal(&prog, &[]);
    run(&forker, &[]);
    let bundle = dir.path().join("a.bundle");
    let one = dir.path().join("one.bundle");
    let said = a.client(&["profile", "export", "-o", bundle.to_str().unwrap()]);
    assert!(
        said.status.success(),
        "{}",
        String::from_utf8_lossy(&said.stderr)
    );
    // Profiles of programs whose files are gone (found running at start-up) are left out, and said.
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("wrote ")), "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with("wrote ")
            || l.ends_with(
                "its content identity is unknown (the file could not be read, \
                 or the monitor is still hashing it: try again)"
            )),
        "{stderr}"
    );
    ok(a.client(&[
        "profile",
        "export",
        prog.to_str().unwrap(),
        "-o",
        one.to_str().unwrap(),
    ]));
    a.stop();

    let profiles = bundle_profiles(&one);
    assert_eq!(profiles.as_array().unwrap().len(), 1);
    let p = &profiles[0];
    assert_eq!(p["identity"]["sha256"], sha256sum(&prog).as_str());
    assert_eq!(p["state"], "normal");
    assert_eq!(p["paths"][0], prog.to_str().unwrap());
    assert!(!p["test"].as_object().unwrap().is_empty());
    assert_eq!(p["sources"][0]["settings"]["normal_wait"], NORMAL_WAIT);

    // Merge: any order, any number of times, the same profiles; offline export agrees too.
    let offline = dir.path().join("offline.bundle");
    ok(ebpfh(&[
        "profile",
        "export",
        "--state-dir",
        state_a.to_str().unwrap(),
        "-o",
        offline.to_str().unwrap(),
    ]));
    let m = |name: &str, inputs: &[&Path]| {
        let out = dir.path().join(name);
        let mut args = vec!["profile", "merge", "-o", out.to_str().unwrap()];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        ok(ebpfh(&args));
        bundle_profiles(&out)
    };
    let ab = m("ab", &[&one, &bundle, &offline]);
    assert_eq!(m("ba", &[&offline, &bundle, &one]), ab);
    assert_eq!(
        m("aa", &[&dir.path().join("ab"), &dir.path().join("ab")]),
        ab
    );
    assert_eq!(m("a1", &[&dir.path().join("ab"), &one]), ab);
    assert!(
        ab.as_array().unwrap().len() >= 2,
        "anomaly and forker at least"
    );

    reinstall(&prog);
    let new_key = stat_key(&prog);
    assert_ne!(new_key, old_key);
    let second_dir = dir.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    let mut b = Monitor::start(&second_dir, &dir.path().join("state-b"), &[]);
    let said = ok(b.client(&["profile", "import", bundle.to_str().unwrap()]));
    assert!(
        said.contains(&format!(
            "created  {} ({new_key}): now normal",
            prog.display()
        )),
        "{said}"
    );
    let quiet: Vec<u32> = (0..5).map(|_| run(&prog, &[])).collect();
    let backdoor = run(&prog, &[BACKDOOR]);
    let hit = b.wait_for("anomaly", |e| e["pid"] == backdoor, Duration::from_secs(10));
    b.stop();
    let hit = hit.expect("the imported profile flags the backdoor");
    assert_eq!(hit["profile"], new_key.as_str());
    assert_eq!(hit["profile_state"], "normal");
    let events = b.events();
    assert!(
        anomalies_of(&events, &quiet).is_empty(),
        "normal runs raised anomalies"
    );
    assert!(
        b.events_of("normal_started")
            .iter()
            .all(|e| e["profile"] != new_key.as_str()),
        "it was normal from the import on, not trained again"
    );
    let imported = b.events_of("profile_imported");
    assert!(imported
        .iter()
        .any(|e| e["result"] == "created" && e["profile"] == new_key.as_str()));
    let audit = b.events_of("command");
    assert!(audit
        .iter()
        .any(|e| e["command"] == "import" && e["result"] == "ok"));
}

/// A copy at a path the bundle does not name is kept as a pending import and applied at its
/// first run; a host that already trained the program merges with `--as normal`.
#[test]
fn root_pending_imports_apply_at_the_first_run_and_merges_can_normalize() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = unique_fixture(dir.path(), "anomaly");
    let first_dir = dir.path().join("first");
    std::fs::create_dir(&first_dir).unwrap();
    let mut a = Monitor::start(&first_dir, &dir.path().join("state-a"), &[]);
    a.train_to_normal(&prog, &[]);
    let bundle = dir.path().join("a.bundle");
    ok(a.client(&[
        "profile",
        "export",
        prog.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]));
    a.stop();

    // Another host: the same bytes at another path, never run there, and nothing at the
    // bundle's path.
    let copy = dir.path().join("elsewhere");
    std::fs::rename(&prog, &copy).unwrap();
    let prog = copy.clone();
    let key = stat_key(&copy);
    let state_b = dir.path().join("state-b");
    let second_dir = dir.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    let mut b = Monitor::start(&second_dir, &state_b, &[]);
    let said = ok(b.client(&["profile", "import", bundle.to_str().unwrap()]));
    assert!(said.starts_with("pending "), "{said}");
    assert_eq!(
        std::fs::read_dir(state_b.join("imports")).unwrap().count(),
        1
    );
    let first = run(&copy, &[]);
    let applied = b.wait_for(
        "profile_imported",
        |e| e["profile"] == key.as_str(),
        Duration::from_secs(10),
    );
    assert!(applied.is_some(), "the pending import was not applied");
    assert_eq!(applied.unwrap()["profile_state"], "normal");
    let quiet: Vec<u32> = (0..5).map(|_| run(&copy, &[])).collect();
    let backdoor = run(&copy, &[BACKDOOR]);
    let hit = b.wait_for("anomaly", |e| e["pid"] == backdoor, Duration::from_secs(10));
    b.stop();
    assert!(hit.is_some(), "the applied import flags the backdoor");
    assert!(anomalies_of(&b.events(), &[&[first][..], &quiet].concat()).is_empty());
    assert_eq!(
        std::fs::read_dir(state_b.join("imports")).unwrap().count(),
        0
    );

    // A third host trained the program a little: the default keeps its training state, and
    // `--as normal` merges and detects at once.
    let third_dir = dir.path().join("third");
    std::fs::create_dir(&third_dir).unwrap();
    let mut c = Monitor::start(&third_dir, &dir.path().join("state-c"), &[]);
    let key = stat_key(&prog);
    run(&prog, &[]);
    c.wait_for(
        "profile_created",
        |e| e["profile"] == key.as_str(),
        CREATED_WAIT,
    )
    .expect("a profile for the program");
    let said = ok(c.client(&["profile", "import", bundle.to_str().unwrap()]));
    assert!(said.contains(&format!("({key}): now training")), "{said}");
    let said = ok(c.client(&[
        "profile",
        "import",
        "--as",
        "normal",
        bundle.to_str().unwrap(),
    ]));
    assert!(
        said.contains(&format!("merged   {} ({key}): now normal", prog.display())),
        "{said}"
    );
    let quiet: Vec<u32> = (0..5).map(|_| run(&prog, &[])).collect();
    let backdoor = run(&prog, &[BACKDOOR]);
    let hit = c.wait_for("anomaly", |e| e["pid"] == backdoor, Duration::from_secs(10));
    c.stop();
    assert!(
        hit.is_some(),
        "the merged normal profile flags the backdoor"
    );
    assert!(anomalies_of(&c.events(), &quiet).is_empty());
}

/// Every file under `dir`, with its bytes.
fn tree(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n != "lock") {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Each kind of damage is refused with its one sentence, by a running monitor and offline, and
/// changes nothing.
#[test]
fn root_bad_bundles_are_refused_and_change_nothing() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = unique_fixture(dir.path(), "anomaly");
    let state = dir.path().join("state");
    let mut mon = Monitor::start(dir.path(), &state, &[]);
    for _ in 0..3 {
        run(&prog, &[]);
    }
    mon.wait_for(
        "profile_created",
        |e| e["exe"] == prog.to_str().unwrap(),
        CREATED_WAIT,
    )
    .expect("a profile for the program");
    let good = dir.path().join("good.bundle");
    ok(mon.client(&[
        "profile",
        "export",
        prog.to_str().unwrap(),
        "-o",
        good.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&good).unwrap();
    assert!(text.contains("\"state\": \"training\""));

    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let row_at = text.find("\": \"").unwrap() + 10;
    let mut flipped = text.clone().into_bytes();
    flipped[row_at] = if flipped[row_at] == b'A' { b'B' } else { b'A' };
    let cases = [
        (
            write("truncated", &text.as_bytes()[..text.len() / 2]),
            "is truncated (its JSON ends early); copy it again",
        ),
        (
            write("corrupt", &flipped),
            "is damaged or was edited: its contents do not match its sha256; export it again",
        ),
        (
            write(
                "tampered",
                text.replacen("\"state\": \"training\"", "\"state\": \"normal\"", 1)
                    .as_bytes(),
            ),
            "is damaged or was edited: its contents do not match its sha256; export it again",
        ),
        (
            write(
                "newer",
                text.replacen("\"version\":1", "\"version\":2", 1)
                    .as_bytes(),
            ),
            "is bundle version 2, newer than this ebpfh reads (1); upgrade ebpfh",
        ),
        (
            write("elf", &std::fs::read(&prog).unwrap()),
            "is not an ebpfh profile bundle (",
        ),
    ];
    let before = mon.events().len();
    for (path, sentence) in &cases {
        // A good bundle first: all or nothing means the good one is not imported either.
        let out = mon.client(&[
            "profile",
            "import",
            good.to_str().unwrap(),
            path.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        let want = format!("ebpfh: the bundle '{}' {sentence}", path.display());
        assert!(err.starts_with(&want), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let after = mon.events();
    assert!(
        after[before..]
            .iter()
            .all(|e| e["event"] != "profile_imported" && e["event"] != "command"),
        "a refused import reached the monitor"
    );
    mon.stop();
    assert!(!state.join("imports").exists());

    // Offline: the same sentences, and not a byte of the state directory changes.
    let files = tree(&state);
    for (path, sentence) in &cases {
        let out = ebpfh(&[
            "profile",
            "import",
            "--state-dir",
            state.to_str().unwrap(),
            path.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with(&format!(
                "ebpfh: the bundle '{}' {sentence}",
                path.display()
            )),
            "{err}"
        );
    }
    assert_eq!(
        tree(&state),
        files,
        "a refused import changed the state directory"
    );
}
