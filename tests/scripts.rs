//! Script profiles on a real kernel: an interpreter running a script file gets an (interpreter,
//! script) profile, while `bash -c`, `python3 -c` and the like keep the interpreter's own.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Starts `program args` in `dir` with output discarded.
fn spawn(dir: &Path, program: &str, args: &[&str]) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// The `ebpfh ps` row of `pid`, waiting until it shows up with its profile's path (which the
/// monitor learns from the profile's first event, a moment after the exec).
fn ps_row(mon: &Monitor, pid: u32) -> Value {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = mon.client_json(&["ps"]);
        if let Some(row) = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pid"] == pid && r["exe"] != "")
        {
            return row.clone();
        }
        assert!(
            Instant::now() < end,
            "pid {pid} never showed up in ebpfh ps: {ps}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ends `child` and whatever it started (its process group).
fn finish(mut child: Child) {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

#[test]
fn root_scripts_get_their_own_profiles_and_inline_code_keeps_the_interpreters() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    let sh = d.join("x.sh");
    write_script(&sh, "#!/bin/sh\nsleep 30\ntrue\n");
    let py = d.join("y.py");
    write_script(&py, "import time\ntime.sleep(30)\n");
    let state = d.join("state");
    let mut mon = Monitor::start(&d, &state, &[]);
    let bash_key = stat_key(Path::new("/usr/bin/bash"));
    let python = fs::canonicalize("/usr/bin/python3").unwrap();
    let python_key = stat_key(&python);

    // `./x.sh` through #!, and `bash x.sh`: the script's profile under its interpreter.
    let hashbang = spawn(&d, "./x.sh", &[]);
    let row = ps_row(&mon, hashbang.id());
    let dash = fs::canonicalize("/bin/sh").unwrap();
    let sh_key = stat_key(&dash);
    let key = row["profile"].as_str().unwrap().to_string();
    assert!(
        key.starts_with(&format!("{sh_key}:")),
        "./x.sh runs under {key}, not a script profile of {sh_key}: {row}"
    );
    assert_eq!(row["script"], sh.to_str().unwrap(), "{row}");
    assert_eq!(row["exe"], dash.to_str().unwrap(), "{row}");
    finish(hashbang);

    let bash_script = spawn(&d, "bash", &["x.sh"]);
    let row = ps_row(&mon, bash_script.id());
    let bash_script_key = row["profile"].as_str().unwrap().to_string();
    assert!(
        bash_script_key.starts_with(&format!("{bash_key}:")),
        "bash x.sh runs under {bash_script_key}: {row}"
    );
    assert_eq!(row["script"], sh.to_str().unwrap(), "{row}");
    // The same script through the same interpreter with another spelling: the same profile.
    let again = spawn(&d, "bash", &["-e", "./x.sh"]);
    assert_eq!(ps_row(&mon, again.id())["profile"], bash_script_key);
    finish(again);
    finish(bash_script);

    let py_script = spawn(&d, python.to_str().unwrap(), &["-u", "y.py"]);
    let row = ps_row(&mon, py_script.id());
    assert!(
        row["profile"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{python_key}:")),
        "python3 y.py runs under {}: {row}",
        row["profile"]
    );
    assert_eq!(row["script"], py.to_str().unwrap(), "{row}");
    finish(py_script);

    // Inline code and interactive use keep the interpreter's own profile.
    let inline = spawn(&d, "bash", &["-c", "sleep 30; true"]);
    let row = ps_row(&mon, inline.id());
    assert_eq!(row["profile"], bash_key.as_str(), "bash -c: {row}");
    assert!(row.get("script").is_none(), "{row}");
    finish(inline);
    let inline = spawn(
        &d,
        python.to_str().unwrap(),
        &["-c", "import time; time.sleep(30)"],
    );
    assert_eq!(ps_row(&mon, inline.id())["profile"], python_key.as_str());
    finish(inline);

    // The event log names the script on the script profile's lines.
    let created = mon
        .wait_for(
            "profile_created",
            |e| e["profile"] == bash_script_key.as_str(),
            CREATED_WAIT,
        )
        .expect("a profile_created line for bash x.sh");
    assert_eq!(created["script"], sh.to_str().unwrap(), "{created}");
    assert_eq!(created["exe"], "/usr/bin/bash", "{created}");

    // `profiles` shows the script after its interpreter, and the file on disk keeps it.
    let profiles = mon.client(&["profiles"]);
    let text = String::from_utf8_lossy(&profiles.stdout);
    assert!(
        text.contains(&format!("/usr/bin/bash {}", sh.display())),
        "{text}"
    );
    mon.stop();
    let store = ebpfh::store::Store::open(&state).unwrap();
    let saved = store.load_all().profiles;
    let p = saved
        .iter()
        .find(|p| p.key.to_string() == bash_script_key)
        .expect("the script profile was saved");
    assert_eq!(
        (p.exe.as_str(), p.script.as_str()),
        ("/usr/bin/bash", sh.to_str().unwrap())
    );
}

#[test]
fn root_script_profiles_off_keeps_every_script_under_its_interpreter() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    write_script(&d.join("x.sh"), "#!/bin/sh\nsleep 30\ntrue\n");
    let mon = Monitor::start(&d, &d.join("state"), &["--script-profiles", "off"]);
    let child = spawn(&d, "bash", &["x.sh"]);
    let row = ps_row(&mon, child.id());
    assert_eq!(
        row["profile"],
        stat_key(Path::new("/usr/bin/bash")).as_str(),
        "{row}"
    );
    finish(child);
}

/// A program started by a relative path that exits at once is still logged with its absolute
/// path (the monitor may never see it in /proc).
#[test]
fn root_short_lived_programs_get_absolute_paths() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    let prog = d.join("quick_r");
    fs::copy("/usr/bin/true", &prog).unwrap();
    let mut mon = Monitor::start(&d, &d.join("state"), &[]);
    let status = Command::new("./quick_r").current_dir(&d).status().unwrap();
    assert!(status.success());
    let key = stat_key(&prog);
    let created = mon
        .wait_for(
            "profile_created",
            |e| e["profile"] == key.as_str(),
            CREATED_WAIT,
        )
        .expect("a profile_created line for ./quick_r");
    assert_eq!(created["exe"], prog.to_str().unwrap(), "{created}");
    for e in mon.events() {
        if let Some(exe) = e["exe"].as_str() {
            assert!(exe.is_empty() || exe.starts_with('/'), "relative exe: {e}");
        }
    }
}
