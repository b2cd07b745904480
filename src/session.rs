//! Starting the kernel program, as the monitor and `ebpfh record` both do: the preflight, the
//! signals that end a session, libbpf's log, loading and attaching — with one sentence when the
//! kernel refuses.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use libbpf_rs::OpenObject;

use crate::bpf::{Capacity, Kernel, LoadError};
use crate::settings::Settings;

/// Says why loading failed and what to try; the kernel's own message follows it.
pub const REFUSED: &str = "the kernel refused ebpfh's BPF program (run with -v to see the verifier \
                           log; kernel lockdown or a BPF-restricting security module can cause this)";

/// The signals that end or steer a session, as flags the session's loop polls (a signal never
/// kills it by the default action, so it always detaches and saves).
pub struct Signals {
    int: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    /// SIGHUP, when the session reopens its log on it; otherwise SIGHUP keeps its default.
    hup: Option<Arc<AtomicBool>>,
}

impl Signals {
    /// Catches SIGINT and SIGTERM, and SIGHUP with `hup`.
    pub fn catch(hup: bool) -> Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let flag = |sig, name| -> Result<Arc<AtomicBool>> {
            let f = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(sig, f.clone())
                .with_context(|| format!("cannot handle {name}"))?;
            Ok(f)
        };
        Ok(Signals {
            int: flag(SIGINT, "SIGINT")?,
            term: flag(SIGTERM, "SIGTERM")?,
            hup: if hup {
                Some(flag(SIGHUP, "SIGHUP")?)
            } else {
                None
            },
        })
    }

    /// The signal that asked the session to end, if one did.
    pub fn stop(&self) -> Option<&'static str> {
        if self.int.load(Ordering::Relaxed) {
            Some("SIGINT")
        } else if self.term.load(Ordering::Relaxed) {
            Some("SIGTERM")
        } else {
            None
        }
    }

    /// Whether SIGHUP arrived since the last call.
    pub fn hangup(&self) -> bool {
        self.hup
            .as_ref()
            .is_some_and(|h| h.swap(false, Ordering::Relaxed))
    }
}

/// The kernel refused something: [`REFUSED`], then the kernel's reason.
pub fn refused(e: LoadError) -> anyhow::Error {
    anyhow::Error::new(e).context(REFUSED)
}

/// Routes libbpf's messages to the log (all of them with `verbose`), then opens, sizes and loads
/// the program with these settings; nothing is attached yet.
pub fn load<'obj>(
    obj: &'obj mut MaybeUninit<OpenObject>,
    capacity: Capacity,
    settings: &Settings,
    verbose: bool,
) -> Result<Kernel<'obj>> {
    crate::bpf::route_libbpf_log(verbose);
    Kernel::load(obj, capacity, settings, std::process::id()).map_err(refused)
}

/// Attaches the programs; with `adopt`, also gives every running process a profile.
pub fn start(kernel: &Kernel<'_>, adopt: bool) -> Result<()> {
    kernel.attach().map_err(refused)?;
    if adopt {
        kernel.adopt_running_tasks().map_err(refused)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_what_to_try_and_keeps_the_kernels_reason() {
        let e = refused(LoadError::ProfilesFull(16));
        let text = format!("{e:#}");
        assert!(text.starts_with(REFUSED), "{text}");
        assert!(text.contains("--max-profiles"), "{text}");
    }
}
