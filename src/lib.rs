//! ebpfh: pH (Process Homeostasis) system-call anomaly detection with eBPF.
//!
//! The binary in `main.rs` is a thin CLI over these modules; `tests/` uses them directly.

pub mod abi;
pub mod bpf;
pub mod bundle;
pub mod cgroup;
pub mod clock;
pub mod columns;
pub mod config;
pub mod control;
pub mod event;
pub mod fleet;
pub mod hasher;
pub mod identity;
pub mod incident;
pub mod jsonl;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod preflight;
pub mod procfs;
pub mod profile;
pub mod progress;
pub mod record;
pub mod replay;
pub mod respond;
pub mod safedir;
pub mod script;
pub mod session;
pub mod settings;
pub mod store;
pub mod syscalls;
pub mod trace;
pub mod tui;
