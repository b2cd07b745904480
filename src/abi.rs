//! Compile-time checks that every number the Rust side keeps by hand equals its C definition in
//! `bpf/ebpfh.h`, as the generated skeleton exports it. A mismatch fails the build, not a test.

use crate::bpf::types;
use crate::bpf::Capacity;
use crate::settings::defaults;

/// `assert!` on two integers in a constant context (no `==` on types there, so compare as u64).
macro_rules! same {
    ($rust:expr, $c:expr) => {
        const _: () = assert!(($rust) as u64 == ($c) as u64, stringify!($rust));
    };
}

// Defaults of the tunables (`enum defaults`, the C initializer of `settings`).
same!(
    defaults::NORMAL_WAIT.as_secs(),
    types::defaults::DEFAULT_NORMAL_WAIT_S.0
);
same!(
    defaults::NORMAL_FACTOR,
    types::defaults::DEFAULT_NORMAL_FACTOR.0
);
same!(
    defaults::NORMAL_FACTOR_DEN,
    types::defaults::DEFAULT_NORMAL_FACTOR_DEN.0
);
same!(
    defaults::ANOMALY_LIMIT,
    types::defaults::DEFAULT_ANOMALY_LIMIT.0
);
same!(
    defaults::TOLERIZE_LIMIT,
    types::defaults::DEFAULT_TOLERIZE_LIMIT.0
);
// A whole number of seconds, as the C side counts it.
const _: () = assert!(defaults::NORMAL_WAIT.subsec_nanos() == 0);

// Capacities (the C maps' declared sizes and `max_profiles` / `max_rows`).
same!(
    Capacity::DEFAULT.profiles,
    types::defaults::DEFAULT_MAX_PROFILES.0
);
same!(Capacity::DEFAULT.rows, types::defaults::DEFAULT_MAX_ROWS.0);
same!(Capacity::MAX_ROWS, types::defaults::MAX_ROWS.0);
same!(
    Capacity::DEFAULT.ring_bytes,
    types::defaults::DEFAULT_RING_BYTES.0
);
same!(
    Capacity::DEFAULT.trace_bytes,
    types::defaults::DEFAULT_TRACE_BYTES.0
);

// The alphabet and the window (`#define`s exported as `enum abi_constants`).
use types::abi_constants as c;
same!(crate::syscalls::NSYMBOLS, c::ABI_NSYMBOLS.0);
same!(crate::syscalls::SYM_OTHER, c::ABI_SYM_OTHER.0);
same!(crate::syscalls::SYM_EMPTY, c::ABI_SYM_EMPTY.0);
same!(crate::columns::NCOLS, c::ABI_NCOLS.0);
same!(crate::columns::NATIVE_LOW_END, c::ABI_NATIVE_LOW_END.0);
same!(
    crate::columns::NATIVE_HIGH_START,
    c::ABI_NATIVE_HIGH_START.0
);
same!(crate::columns::NATIVE_HIGH_END, c::ABI_NATIVE_HIGH_END.0);
same!(
    std::mem::size_of::<crate::columns::KernelRow>(),
    std::mem::size_of::<types::row>()
);
same!(crate::model::WINDOW, c::ABI_WINDOW.0);
same!(crate::model::DISTANCES, c::ABI_DISTANCES.0);
same!(crate::model::RING, c::ABI_RING.0);
same!(crate::model::SIGSTACK, c::ABI_SIGSTACK.0);
same!(crate::model::LOCALITY, c::ABI_LOCALITY.0);
same!(crate::profile::PS_FROZEN, c::ABI_PS_FROZEN.0);
same!(crate::profile::PS_NORMAL, c::ABI_PS_NORMAL.0);
same!(crate::profile::PS_TAINTED, c::ABI_PS_TAINTED.0);

// The ebpfh lifecycle's constants and the lifecycle numbers.
same!(crate::profile::NOVELTY_ONE, c::ABI_NOVELTY_ONE.0);
same!(crate::model::NOVELTY_SHIFT, c::ABI_NOVELTY_SHIFT.0);
same!(crate::model::NOVELTY_FREEZE, c::ABI_NOVELTY_FREEZE.0);
same!(crate::model::NOVELTY_THAW, c::ABI_NOVELTY_THAW.0);
same!(crate::model::FREEZE_MIN_CALLS, c::ABI_FREEZE_MIN_CALLS.0);
same!(crate::model::ACCEPT_RUNS, c::ABI_ACCEPT_RUNS.0);
same!(
    crate::settings::Lifecycle::Ebpfh.raw(),
    types::lifecycle::LIFECYCLE_EBPFH.0
);
same!(
    crate::settings::Lifecycle::Ph.raw(),
    types::lifecycle::LIFECYCLE_PH.0
);
same!(
    crate::settings::defaults::LIFECYCLE.raw(),
    types::lifecycle::LIFECYCLE_EBPFH.0
);
same!(
    crate::profile::KERNEL_SLOT_BYTES,
    std::mem::size_of::<types::profile>()
);

// The model's rt_sigreturn is the one the kernel program was built with.
same!(
    crate::model::NR_RT_SIGRETURN,
    types::bpf_constants::K_NR_RT_SIGRETURN.0
);

// The command program's errors are the kernel's errnos, which Rust reads through libc.
same!(nix::libc::ENOENT, types::bpf_constants::K_ENOENT.0);
same!(nix::libc::EBUSY, types::bpf_constants::K_EBUSY.0);
same!(nix::libc::ENODATA, types::bpf_constants::K_ENODATA.0);
same!(nix::libc::EAGAIN, types::bpf_constants::K_EAGAIN.0);

// The `policy` map's value is one byte.
const _: () = assert!(types::response_policy::POLICY_ALLOW.0 <= u8::MAX as u32);
const _: () = assert!(types::response_policy::POLICY_TARGET.0 <= u8::MAX as u32);

// Trace kinds travel in a __u16.
const _: () = assert!(types::trace_kind::TR_SIGRETURN.0 <= u16::MAX as u32);

// Loss counters: one per event kind, one per stat index.
same!(crate::bpf::EVENT_KINDS, types::event_kind::EV_KIND_MAX.0);
const _: () = assert!(types::stat_index::STAT_INDEX_RACE.0 < types::stat_index::STAT_MAX.0);

// Event windows: src/event.rs copies the C `window` arrays into `[u16; model::WINDOW]`, which
// compiles only while the lengths agree.
