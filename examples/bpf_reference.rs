//! Benchmark helper (not part of the product): loads a BPF object file, attaches its programs
//! (all of them, or only those named after the object), and keeps them attached until its
//! standard input closes. `make bench` uses it to put empty `tp_btf/sys_enter` and
//! `tp_btf/sys_exit` programs side by side with ebpfh, and, for its breakdown, cut-down builds of
//! ebpfh's own `sys_enter` (`--maps-of PID`: they then work on the maps of the monitor running as
//! PID, so they see its tasks and profiles).
//!
//! Usage: `bpf_reference [--maps-of PID] OBJECT.bpf.o [PROGRAM...]`; prints `attached N programs`
//! once attached. Only the named programs are loaded.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;

use anyhow::{bail, Context};
use libbpf_rs::{MapCore, MapHandle};

/// The maps a process holds, by the name they are matched on (see [`match_name`]).
fn maps_of(pid: u32) -> anyhow::Result<HashMap<String, MapHandle>> {
    let mut out = HashMap::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {dir}"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse().ok())
        else {
            continue;
        };
        let map = MapHandle::from_map_id(id).with_context(|| format!("map {id} of pid {pid}"))?;
        out.insert(match_name(&map.name().to_string_lossy()), map);
    }
    Ok(out)
}

/// A map's name without the object-name prefix libbpf gives the maps of global data (`.rodata`,
/// `.bss`, `.data.settings`): two objects of the same source match on the rest.
fn match_name(name: &str) -> String {
    match name.find('.') {
        Some(i) => name[i..].to_string(),
        None => name.to_string(),
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let mut shared = None;
    if args.peek().map(String::as_str) == Some("--maps-of") {
        args.next();
        let pid: u32 = args
            .next()
            .and_then(|p| p.parse().ok())
            .context("--maps-of needs a pid")?;
        shared = Some(maps_of(pid)?);
    }
    let path = args.next().ok_or_else(|| {
        anyhow::anyhow!("usage: bpf_reference [--maps-of PID] OBJECT.bpf.o [PROGRAM...]")
    })?;
    let only: Vec<String> = args.collect();
    let mut open = libbpf_rs::ObjectBuilder::default().open_file(&path)?;
    for mut prog in open.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        prog.set_autoload(only.is_empty() || only.contains(&name));
    }
    if let Some(shared) = &shared {
        for mut map in open.maps_mut() {
            let name = match_name(&map.name().to_string_lossy());
            let Some(theirs) = shared.get(&name) else {
                bail!("the monitor has no map {name} to share with {path}");
            };
            map.reuse_fd(theirs.as_fd())?;
        }
    }
    let obj = open.load()?;
    let mut links = Vec::new();
    for prog in obj.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if only.is_empty() || only.contains(&name) {
            links.push(prog.attach()?);
        }
    }
    if !only.is_empty() && links.len() != only.len() {
        bail!("{path} does not have all of the programs {only:?}");
    }
    println!("attached {} programs", links.len());
    std::io::stdout().flush()?;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}
