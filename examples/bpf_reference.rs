//! Benchmark helper (not part of the product): loads a BPF object file, attaches its programs
//! (all of them, or only those named after the object), and keeps them attached until its
//! standard input closes. `make bench` uses it to put empty `tp_btf/sys_enter` and
//! `tp_btf/sys_exit` programs side by side with ebpfh.
//!
//! Usage: `bpf_reference OBJECT.bpf.o [PROGRAM...]`; prints `attached N programs` once attached.

use std::io::{Read, Write};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: bpf_reference OBJECT.bpf.o [PROGRAM...]"))?;
    let only: Vec<String> = args.collect();
    let obj = libbpf_rs::ObjectBuilder::default()
        .open_file(&path)?
        .load()?;
    let mut links = Vec::new();
    for prog in obj.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if only.is_empty() || only.contains(&name) {
            links.push(prog.attach()?);
        }
    }
    if !only.is_empty() && links.len() != only.len() {
        anyhow::bail!("{path} does not have all of the programs {only:?}");
    }
    println!("attached {} programs", links.len());
    std::io::stdout().flush()?;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}
