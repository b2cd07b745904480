//! Benchmark helper (not part of the product): loads a BPF object file, attaches every program
//! in it, and keeps them attached until its standard input closes. `make bench` uses it to put an
//! empty `tp_btf/sys_enter` program side by side with ebpfh.

use std::io::Read;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bpf_reference OBJECT.bpf.o"))?;
    let obj = libbpf_rs::ObjectBuilder::default()
        .open_file(&path)?
        .load()?;
    let mut links = Vec::new();
    for prog in obj.progs_mut() {
        links.push(prog.attach()?);
    }
    println!("attached {} programs", links.len());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}
