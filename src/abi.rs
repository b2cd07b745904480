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
same!(
    Capacity::DEFAULT.ring_bytes,
    types::defaults::DEFAULT_RING_BYTES.0
);
same!(
    Capacity::DEFAULT.trace_bytes,
    types::defaults::DEFAULT_TRACE_BYTES.0
);
