//! The control plane: a Unix socket through which `ebpfh top` and the small subcommands
//! (`status`, `ps`, `profiles`, `normalize`, `set`, …) talk to a running monitor.
//!
//! `protocol` defines the messages, `server` runs inside the monitor, `client` is what the
//! subcommands use. See `protocol` for the wire format.

pub mod client;
pub mod print;
pub mod protocol;
pub mod server;

/// Where the socket and the pid file live unless `--run-dir` says otherwise.
pub const DEFAULT_RUN_DIR: &str = "/run/ebpfh";
