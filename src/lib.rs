//! ebpfh: pH (Process Homeostasis) system-call anomaly detection with eBPF.
//!
//! The binary in `main.rs` is a thin CLI over these modules; `tests/` uses them directly.

pub mod profile;
pub mod syscalls;
