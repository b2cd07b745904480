//! System-call numbers and names: the alphabet of the kernel program.
//!
//! Symbols are native syscall numbers below [`SYM_OTHER`]; [`SYM_OTHER`] stands for any id outside
//! the table and [`SYM_EMPTY`] for "no call yet" (pH's EMPTY). Names come from the `syscalls`
//! crate's table for the ABI, never from whatever header happens to be at hand.

use std::str::FromStr;

/// Width of a lookahead table: symbols are `0..NSYMBOLS`.
pub const NSYMBOLS: usize = 512;
/// Every id outside `0..SYM_OTHER`.
pub const SYM_OTHER: u16 = 510;
/// The empty slot of a fresh window.
pub const SYM_EMPTY: u16 = 511;

/// A system-call table: which numbering a trace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Abi {
    /// The machine ebpfh was built for.
    #[default]
    Native,
    X86_64,
    I386,
    Aarch64,
}

impl Abi {
    fn resolve(self) -> Abi {
        match self {
            Abi::Native if cfg!(target_arch = "aarch64") => Abi::Aarch64,
            Abi::Native => Abi::X86_64,
            other => other,
        }
    }

    /// Name of symbol `sym`, or `None` for a number the table does not know.
    pub fn name(self, sym: u16) -> Option<&'static str> {
        match sym {
            SYM_EMPTY => return Some("EMPTY"),
            SYM_OTHER => return Some("OTHER"),
            _ => {}
        }
        let id = usize::from(sym);
        match self.resolve() {
            Abi::X86_64 => syscalls::x86_64::Sysno::new(id).map(|s| s.name()),
            Abi::I386 => syscalls::x86::Sysno::new(id).map(|s| s.name()),
            Abi::Aarch64 => syscalls::aarch64::Sysno::new(id).map(|s| s.name()),
            Abi::Native => unreachable!("resolved above"),
        }
    }

    /// Number of the call called `name` (also accepts `EMPTY` and `OTHER`).
    pub fn number(self, name: &str) -> Option<u16> {
        match name {
            "EMPTY" => return Some(SYM_EMPTY),
            "OTHER" => return Some(SYM_OTHER),
            _ => {}
        }
        let id = match self.resolve() {
            Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
            Abi::I386 => syscalls::x86::Sysno::from_str(name).ok()?.id(),
            Abi::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()?.id(),
            Abi::Native => unreachable!("resolved above"),
        };
        u16::try_from(id).ok().filter(|&n| n < SYM_OTHER)
    }
}

/// Symbol for a raw syscall id as the kernel program maps it.
pub fn symbol(id: i64) -> u16 {
    if (0..i64::from(SYM_OTHER)).contains(&id) {
        id as u16
    } else {
        SYM_OTHER
    }
}

/// Display name of a native symbol; unknown numbers print as `syscall_N`.
pub fn name(sym: u16) -> String {
    line_name(sym).into_owned()
}

/// [`name`] as an event line holds it: borrowed from the table (no allocation) when known.
pub fn line_name(sym: u16) -> crate::jsonl::Name {
    match Abi::Native.name(sym) {
        Some(n) => n.into(),
        None => format!("syscall_{sym}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_names_match_the_kernel_abi() {
        let abi = Abi::X86_64;
        assert_eq!(abi.name(0), Some("read"));
        assert_eq!(abi.name(1), Some("write"));
        assert_eq!(abi.name(15), Some("rt_sigreturn"));
        assert_eq!(abi.name(59), Some("execve"));
        assert_eq!(Abi::Aarch64.name(64), Some("write"));
        assert_eq!(Abi::I386.name(4), Some("write"));
    }

    #[test]
    fn sentinels_have_names_and_round_trip() {
        for abi in [Abi::X86_64, Abi::I386, Abi::Aarch64] {
            assert_eq!(abi.name(SYM_EMPTY), Some("EMPTY"));
            assert_eq!(abi.number("EMPTY"), Some(SYM_EMPTY));
            assert_eq!(abi.number("OTHER"), Some(SYM_OTHER));
            assert_eq!(
                abi.number("openat").and_then(|n| abi.name(n)),
                Some("openat")
            );
        }
        assert_eq!(Abi::X86_64.number("no_such_call"), None);
    }

    #[test]
    fn out_of_range_ids_become_other() {
        assert_eq!(symbol(0), 0);
        assert_eq!(symbol(509), 509);
        assert_eq!(symbol(510), SYM_OTHER);
        assert_eq!(symbol(-1), SYM_OTHER);
        assert_eq!(symbol(0x4000_0001), SYM_OTHER); // x32 write
    }

    #[test]
    fn unknown_numbers_print_their_number() {
        assert_eq!(name(509), "syscall_509");
    }
}
