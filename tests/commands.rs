//! Root tests of the kernel-side operator commands and task listing, driving the real BPF
//! program in-process through the library (no monitor binary involved).

mod common;

use std::mem::MaybeUninit;
use std::os::unix::fs::MetadataExt;
use std::process::{Command as Process, Stdio};

use common::*;
use ebpfh::bpf::{Capacity, Command, CommandError, Kernel};
use ebpfh::profile::{ProfileKey, State};
use ebpfh::settings::{Lifecycle, Settings};

fn key_of(path: &std::path::Path) -> ProfileKey {
    let m = std::fs::metadata(path).unwrap();
    ProfileKey::from_stat(m.dev(), m.ino())
}

/// Loads the program with `lifecycle`, trains the `anomaly` fixture on three runs and
/// normalizes it, runs `check` (the lifecycle's own commands) on the kernel, the program and
/// its slot, then the commands both lifecycles share.
fn commands_under(lifecycle: Lifecycle, check: impl FnOnce(&Kernel, &std::path::Path, u32)) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let prog = build_fixture(dir.path(), "anomaly");
    let cap = Capacity {
        profiles: 256,
        rows: 4096,
        ring_bytes: 1 << 20,
        trace_bytes: 64 << 10,
        ..Capacity::DEFAULT
    };
    let mut obj = MaybeUninit::uninit();
    let settings = Settings {
        lifecycle,
        ..Settings::default()
    };
    let kernel = Kernel::load(&mut obj, cap, &settings, std::process::id())
        .unwrap_or_else(|e| panic!("the kernel refused the program: {e}"));
    kernel.attach().expect("attach");
    for _ in 0..3 {
        run(&prog, &[]);
    }
    let slot = kernel
        .slot_of(key_of(&prog))
        .expect("the program got a profile");
    let p = kernel.profile(slot).unwrap();
    assert_eq!(p.key, key_of(&prog));
    assert!(p.train.pairs() > 0 && p.sequences > 0 && p.count > 0);
    assert!(
        p.test.rows.is_empty(),
        "no testing data before normalization"
    );

    kernel
        .command(slot, Command::Normalize)
        .expect("normalize a trained profile");
    let n = kernel.profile(slot).unwrap();
    assert_eq!(n.state(), State::Normal);
    assert_eq!(
        n.test, n.train,
        "normalize copies training data to testing data"
    );
    assert_eq!((n.train_count, n.last_mod_count, n.anomalies), (0, 0, 0));

    check(&kernel, &prog, slot);

    kernel.command(slot, Command::Tolerize).unwrap();
    assert_eq!(kernel.profile(slot).unwrap().state(), State::Training);
    assert_eq!(
        kernel.command(slot, Command::Accept),
        Err(CommandError::NotNormal)
    );

    kernel.command(slot, Command::Freeze).unwrap();
    let f = kernel.profile(slot).unwrap();
    assert_eq!(f.state(), State::Frozen);
    assert!(
        f.normal_time > ebpfh::clock::tai_now(),
        "a frozen profile waits normal_wait"
    );

    kernel.command(slot, Command::Reset).unwrap();
    let r = kernel.profile(slot).unwrap();
    assert_eq!(r.state(), State::Training);
    assert_eq!(
        (r.count, r.sequences, r.train.pairs(), r.test.pairs()),
        (0, 0, 0, 0)
    );

    assert_eq!(
        kernel.command(9999, Command::Freeze),
        Err(CommandError::NoProfile)
    );
}

#[test]
fn root_commands_drive_the_profile_state_machine_under_phs_lifecycle() {
    commands_under(Lifecycle::Ph, |kernel, _, slot| {
        let n = kernel.profile(slot).unwrap();
        kernel.command(slot, Command::Sensitize).unwrap();
        let s = kernel.profile(slot).unwrap();
        assert_eq!(s.train.pairs(), 0, "sensitize forgets training data");
        assert_eq!(s.test, n.test, "and keeps testing data");
        assert_eq!(s.state(), State::Normal);
        assert_eq!(
            kernel.command(slot, Command::Normalize),
            Err(CommandError::Untrained)
        );
        assert_eq!(
            kernel.command(slot, Command::Accept),
            Err(CommandError::NothingPending),
            "pH's lifecycle keeps nothing pending"
        );
    });
}

#[test]
fn root_commands_drive_the_profile_state_machine_under_the_default_lifecycle() {
    commands_under(Lifecycle::Ebpfh, |kernel, prog, slot| {
        let n = kernel.profile(slot).unwrap();
        assert_eq!(
            kernel.command(slot, Command::Accept),
            Err(CommandError::NothingPending)
        );
        // The backdoor teaches the normal profile new pairs: pending, not tested.
        run(prog, &["x"]);
        let p = kernel.profile(slot).unwrap();
        assert!(p.life.pending > 0, "nothing pending after the backdoor");
        assert!(p.train.pairs() > n.train.pairs());
        assert_eq!(p.test, n.test, "pending pairs are not testing data");
        // Sensitize drops what is pending and nothing else.
        kernel.command(slot, Command::Sensitize).unwrap();
        let s = kernel.profile(slot).unwrap();
        assert_eq!((s.life.pending, &s.train, &s.test), (0, &n.test, &n.test));
        assert_eq!(s.state(), State::Normal);
        // Learned again, then accepted: now testing data.
        run(prog, &["x"]);
        kernel.command(slot, Command::Accept).unwrap();
        let a = kernel.profile(slot).unwrap();
        assert_eq!(a.life.pending, 0);
        assert!(a.test.pairs() > n.test.pairs());
        assert_eq!(a.test, a.train);
        assert_eq!(
            kernel.command(slot, Command::Accept),
            Err(CommandError::NothingPending)
        );
    });
}

/// Whether the process is blocked in a sleep call (the first field of /proc/PID/syscall is the
/// number of the call it is in).
fn in_nanosleep(proc_dir: &std::path::Path) -> bool {
    let Ok(s) = std::fs::read_to_string(proc_dir.join("syscall")) else {
        return false;
    };
    let nr = s
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    nr == Some(nix::libc::SYS_clock_nanosleep) || nr == Some(nix::libc::SYS_nanosleep)
}

#[test]
fn root_tasks_are_listed_with_their_profiles() {
    require_root();
    let cap = Capacity {
        profiles: 256,
        rows: 4096,
        ring_bytes: 1 << 20,
        trace_bytes: 64 << 10,
        ..Capacity::DEFAULT
    };
    let mut obj = MaybeUninit::uninit();
    let kernel = Kernel::load(&mut obj, cap, &Settings::default(), std::process::id()).unwrap();
    kernel.attach().unwrap();
    let mut sleeper = Process::new("sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    // Wait until the child has exec'd sleep (its profile appears at exec) and is blocked in
    // its nanosleep: the task takes its profile at exec, before its first call, so only then
    // has it surely made calls since exec (on an emulated CPU the gap is long).
    let proc_dir = std::path::Path::new("/proc").join(pid.to_string());
    let mut slot = None;
    for _ in 0..500 {
        let exe = key_of(&proc_dir.join("exe"));
        slot = kernel.slot_of(exe);
        if slot.is_some() && kernel.slot_of_task(pid) == slot && in_nanosleep(&proc_dir) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let tasks = kernel.tasks().unwrap();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let slot = slot.expect("sleep got a profile");
    assert_eq!(
        kernel.slot_of_task(std::process::id()),
        None,
        "the caller is never traced"
    );
    let t = tasks
        .iter()
        .find(|t| t.pid == pid)
        .expect("sleep is listed");
    assert_eq!(t.slot, slot);
    assert_eq!(t.comm, "sleep");
    assert_eq!(t.ppid, std::process::id());
    assert!(t.count > 0);
    assert!(
        tasks.iter().all(|t| t.pid != std::process::id()),
        "the caller is not listed"
    );
}
