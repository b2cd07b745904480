//! Checks that turn "the kernel said EPERM" into a sentence a user can act on, before loading.

use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error("ebpfh must run as root to load its BPF programs; run it with sudo")]
    NotRoot,
    #[error("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); ebpfh needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, as most distributions ship")]
    NoBtf,
    #[error("kernel {0} is too old; ebpfh needs Linux 6.1 or newer")]
    TooOld(String),
}

/// Oldest kernel with everything the program uses (tp_btf task storage, bpf_loop, TAI clock).
pub const MIN_KERNEL: (u32, u32) = (6, 1);

/// Parses the leading `major.minor` of a `uname -r` string.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn check() -> Result<(), PreflightError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(PreflightError::NotRoot);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(PreflightError::NoBtf);
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    match parse_release(&release) {
        Some(v) if v < MIN_KERNEL => Err(PreflightError::TooOld(release)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_with_distribution_suffixes() {
        assert_eq!(parse_release("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(parse_release("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert_eq!(parse_release("garbage"), None);
        assert!(parse_release("5.15.0").unwrap() < MIN_KERNEL);
        assert!(parse_release("6.1.0").unwrap() >= MIN_KERNEL);
    }
}
