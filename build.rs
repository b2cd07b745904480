//! Compiles the BPF program and generates its Rust skeleton.
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/ebpfh.bpf.c";
const HEADER: &str = "bpf/ebpfh.h";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let vmlinux_dir = match arch.as_str() {
        "x86_64" => "vmlinux/x86",
        "aarch64" => "vmlinux/arm64",
        other => panic!("ebpfh has no vmlinux.h for {other}; run `make vmlinux` on such a machine"),
    };
    // .cargo/config.toml points TMPDIR at target/tmp, which a fresh clone does not have yet; the
    // BPF compile below and the tests' temporary directories need it.
    if let Some(tmp) = env::var_os("TMPDIR") {
        std::fs::create_dir_all(&tmp).expect("cannot create the temporary directory TMPDIR names");
    }
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args([
            "-I",
            vmlinux_dir,
            "-I",
            "bpf",
            // Atomics whose result is used (fetch_add, cmpxchg) need v3.
            "-mcpu=v3",
            "-Wall",
            "-Werror",
        ])
        .build_and_generate(out.join("ebpfh.skel.rs"))
        .expect("failed to build the BPF program (is clang installed? `make deps`)");
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-changed={vmlinux_dir}/vmlinux.h");
}
