//! `ebpfh record`: runs the kernel program in recording mode and writes what it processed to a
//! trace file — system-wide, or for one command and everything it starts.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::mem::MaybeUninit;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::RingBufferBuilder;

use crate::bpf::{types, Capacity};
use crate::event::{self, Event};
use crate::profile::ProfileKey;
use crate::session::{self, Signals};
use crate::settings::{RecordMode, Settings};
use crate::syscalls::Abi;
use crate::trace::{self, Record};
use crate::{clock, preflight, procfs};

#[derive(Clone, Debug)]
pub struct Options {
    pub output: PathBuf,
    /// The command to record; empty records the whole system until SIGINT.
    pub command: Vec<String>,
    pub settings: Settings,
    pub capacity: Capacity,
    pub verbose: bool,
}

/// Decodes one record of the `trace` ring buffer.
fn decode(data: &[u8]) -> Option<Record> {
    if data.len() == std::mem::size_of::<types::trace_call>() {
        let mut r = types::trace_call::default();
        plain::copy_from_bytes(&mut r, data).ok()?;
        return Some(match types::trace_kind(u32::from(r.kind)) {
            types::trace_kind::TR_CALL => Record::Call {
                tid: r.tid,
                nr: r.nr,
                time: r.time,
            },
            types::trace_kind::TR_EXIT => Record::Exit {
                tid: r.tid,
                time: r.time,
            },
            types::trace_kind::TR_SIGNAL => Record::Signal {
                tid: r.tid,
                time: r.time,
            },
            types::trace_kind::TR_SIGRETURN => Record::Sigreturn {
                tid: r.tid,
                time: r.time,
            },
            _ => return None,
        });
    }
    let mut r = types::trace_task::default();
    plain::copy_from_bytes(&mut r, data).ok()?;
    let key = ProfileKey::from(r.key);
    Some(match types::trace_kind(u32::from(r.kind)) {
        types::trace_kind::TR_EXEC => Record::Exec {
            tid: r.tid,
            tgid: r.tgid,
            key,
            time: r.time,
        },
        types::trace_kind::TR_FORK => Record::Fork {
            child: r.tid,
            tgid: r.tgid,
            parent: r.other,
            time: r.time,
        },
        types::trace_kind::TR_ADOPT => Record::Adopt {
            tid: r.tid,
            tgid: r.tgid,
            key,
            time: r.time,
        },
        _ => return None,
    })
}

/// Records until the command exits (or SIGINT); returns the command's exit code.
pub fn run(opts: &Options) -> Result<i32> {
    preflight::check()?;
    let file = File::create(&opts.output)
        .with_context(|| format!("cannot create the trace file '{}'", opts.output.display()))?;
    let mut writer = trace::Writer::new(BufWriter::new(file), Abi::Native, clock::tai_now())?;
    let tunables = crate::model::Settings::from(&opts.settings);
    writer.write(&Record::Settings {
        normal_wait_ns: tunables.normal_wait_ns,
        normal_factor: tunables.normal_factor,
        normal_factor_den: tunables.normal_factor_den,
        anomaly_limit: tunables.anomaly_limit,
        tolerize_limit: tunables.tolerize_limit,
        lifecycle: tunables.lifecycle.raw(),
    })?;
    let signals = Signals::catch(false)?;

    let mut settings = opts.settings.clone();
    settings.record = if opts.command.is_empty() {
        RecordMode::All
    } else {
        RecordMode::Tree {
            recorder: std::process::id(),
        }
    };

    let mut obj = MaybeUninit::uninit();
    let kernel = session::load(&mut obj, opts.capacity, &settings, opts.verbose)?;
    // System-wide, the running processes are recorded too; a command's tree starts at its exec.
    session::start(&kernel, opts.command.is_empty())?;

    let records = RefCell::new(Vec::new());
    // Key -> (executable, script) as the profile_created event names them.
    let created = RefCell::new(HashMap::<ProfileKey, (String, String)>::new());
    let mut builder = RingBufferBuilder::new();
    builder
        .add(kernel.trace_map(), |data: &[u8]| {
            if let Some(r) = decode(data) {
                records.borrow_mut().push(r);
            }
            0
        })
        .context("cannot read the trace ring buffer")?;
    builder
        .add(kernel.events_map(), |data: &[u8]| {
            // Only profile creations matter here, and they carry their key.
            if let Ok((Event::ProfileCreated { key, .. }, origin)) =
                event::decode(data, |_| ProfileKey::default())
            {
                // A script's exec names the script, not the interpreter.
                let hint = if key.is_script() {
                    ""
                } else {
                    &origin.filename
                };
                let path = procfs::exe_path(origin.tgid, key, &origin.path, hint);
                let script = procfs::script_path(origin.tgid, &origin.script, &origin.cwd);
                created.borrow_mut().insert(key, (path, script));
            }
            0
        })
        .context("cannot read the event ring buffer")?;
    let ring = builder
        .build()
        .context("cannot read the kernel's ring buffers")?;

    // Recording is live: start the command (its exec begins the recorded tree).
    let mut child = match opts.command.split_first() {
        Some((program, args)) => Some(
            Command::new(program)
                .args(args)
                .spawn()
                .with_context(|| format!("cannot run '{program}'"))?,
        ),
        None => None,
    };
    log::info!("recording to '{}'", opts.output.display());

    let mut paths: BTreeMap<ProfileKey, String> = BTreeMap::new();
    let mut drain = |writer: &mut trace::Writer<BufWriter<File>>| -> Result<()> {
        for r in records.borrow_mut().drain(..) {
            if let Record::Exec { tgid, key, .. } | Record::Adopt { tgid, key, .. } = r {
                // Read /proc now, while the process most likely still runs.
                paths
                    .entry(key)
                    .or_insert_with(|| procfs::exe_path(tgid, key, "", ""));
            }
            writer.write(&r)?;
        }
        Ok(())
    };
    let status = loop {
        let _ = ring.poll(Duration::from_millis(100));
        kernel.sync_clock();
        drain(&mut writer)?;
        if let Some(c) = &mut child {
            if let Some(status) = c.try_wait()? {
                break Some(status);
            }
        }
        if signals.stop().is_some() {
            break None;
        }
    };
    kernel.detach();
    let _ = ring.consume();
    drain(&mut writer)?;
    drop(ring);

    // Paths, then the kernel's final profiles for every executable the trace mentions.
    let created = created.into_inner();
    let mut scripts: BTreeMap<ProfileKey, String> = BTreeMap::new();
    for (key, path) in paths.iter_mut() {
        let (exe, script) = created.get(key).cloned().unwrap_or_default();
        if (path.is_empty() || path.starts_with('.')) && !exe.is_empty() {
            *path = exe;
        }
        writer.write(&Record::Exe {
            key: *key,
            path: path.clone(),
            script: script.clone(),
        })?;
        scripts.insert(*key, script);
    }
    for slot in kernel.slots() {
        if let Some(mut p) = kernel.profile(slot) {
            if let Some(path) = paths.get(&p.key) {
                p.exe = path.clone();
                p.script = scripts.get(&p.key).cloned().unwrap_or_default();
                writer.write(&Record::Profile(Box::new(p)))?;
            }
        }
    }
    let lost = kernel.stats().trace_lost;
    let calls = writer.calls;
    writer.write(&Record::End { lost, calls })?;
    let mut out = writer.finish()?;
    out.flush()
        .with_context(|| format!("cannot write the trace file '{}'", opts.output.display()))?;
    log::info!(
        "recorded {calls} calls of {} executables to '{}'{}",
        paths.len(),
        opts.output.display(),
        if lost > 0 {
            format!(" ({lost} records lost: raise --trace-bytes)")
        } else {
            String::new()
        }
    );
    Ok(match status {
        Some(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        None => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_records_decode_by_size_and_kind() {
        let c = types::trace_call {
            time: 5,
            tid: 7,
            kind: types::trace_kind::TR_CALL.0 as u16,
            nr: 59,
        };
        // SAFETY: plain C record.
        let bytes = unsafe { plain::as_bytes(&c) };
        assert_eq!(
            decode(bytes),
            Some(Record::Call {
                tid: 7,
                nr: 59,
                time: 5
            })
        );
        let t = types::trace_task {
            time: 9,
            tid: 8,
            kind: types::trace_kind::TR_FORK.0 as u16,
            tgid: 8,
            other: 7,
            key: types::profile_key {
                dev: 1,
                ino: 2,
                script: 3,
            },
            ..Default::default()
        };
        // SAFETY: plain C record.
        let bytes = unsafe { plain::as_bytes(&t) };
        assert_eq!(
            decode(bytes),
            Some(Record::Fork {
                child: 8,
                tgid: 8,
                parent: 7,
                time: 9
            })
        );
        // A handler frame closed by a call that is not a recorded rt_sigreturn.
        let pop = types::trace_call {
            kind: types::trace_kind::TR_SIGRETURN.0 as u16,
            nr: 0,
            ..c
        };
        // SAFETY: plain C record.
        let bytes = unsafe { plain::as_bytes(&pop) };
        assert_eq!(decode(bytes), Some(Record::Sigreturn { tid: 7, time: 5 }));
        let bad = types::trace_call { kind: 77, ..c };
        // SAFETY: plain C record.
        assert_eq!(decode(unsafe { plain::as_bytes(&bad) }), None);
    }
}
