//! Benchmark helper (not part of the product): prints one JSON object per profile saved in a
//! state directory, with the kernel memory the profile occupies while loaded
//! (`Profile::kernel_bytes`: its 1720-byte slot plus a 400-byte row per training row and per
//! testing row that differs from its training row, which the kernel stores once for both).
//! `make bench` uses it for the per-profile memory figures.
//!
//! Usage: `bench_profiles STATE_DIR` (read only; run it while no monitor uses the directory).

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bench_profiles STATE_DIR"))?;
    let store = ebpfh::store::Store::open(&dir)?;
    for p in store.load_all().profiles {
        let line = serde_json::json!({
            "profile": p.key.to_string(),
            "exe": p.exe,
            "state": p.state().as_str(),
            "count": p.count,
            "sequences": p.sequences,
            "anomalies": p.anomalies,
            "train_rows": p.train.rows.len(),
            "test_rows": p.test.rows.len(),
            "kernel_bytes": p.kernel_bytes(),
        });
        println!("{line}");
    }
    Ok(())
}
