//! The kernel's columns: the native symbols without the block of numbers the architecture never
//! assigns, so that a row the kernel holds is [`NCOLS`] bytes instead of [`NSYMBOLS`].
//!
//! Userspace works in symbols everywhere (events, trace records, the model, files, bundles); only
//! the rows and row indexes the monitor loads into the kernel and dumps from it are in columns,
//! converted here. A native number that no call can have (x86_64 assigns none from 336 to 423) is
//! OTHER in the kernel, as a foreign id is; a row an older file holds for such a number is folded
//! into OTHER's when it is loaded. The constants are `bpf/ebpfh.h`'s (checked in `src/abi.rs`).

use std::collections::BTreeMap;

use crate::profile::{Row, Table};
use crate::syscalls::{NSYMBOLS, SYM_EMPTY, SYM_OTHER};

/// Width of the kernel's rows and row indexes.
pub const NCOLS: usize = 400;
/// The column of every id without one of its own.
pub const COL_OTHER: u16 = NCOLS as u16 - 2;
/// The column of the empty slot of a fresh window.
pub const COL_EMPTY: u16 = NCOLS as u16 - 1;

/// Numbers `0..NATIVE_LOW_END` are their own column.
#[cfg(not(target_arch = "aarch64"))]
pub const NATIVE_LOW_END: u16 = 340;
#[cfg(target_arch = "aarch64")]
pub const NATIVE_LOW_END: u16 = 295;
/// Numbers `NATIVE_HIGH_START..NATIVE_HIGH_END` are shifted down to follow them.
pub const NATIVE_HIGH_START: u16 = 424;
#[cfg(not(target_arch = "aarch64"))]
pub const NATIVE_HIGH_END: u16 = 482;
#[cfg(target_arch = "aarch64")]
pub const NATIVE_HIGH_END: u16 = SYM_OTHER;
const GAP: u16 = NATIVE_HIGH_START - NATIVE_LOW_END;

const _: () = assert!(NATIVE_HIGH_END - GAP <= COL_OTHER && NATIVE_HIGH_END <= SYM_OTHER);

/// A row as the kernel holds it: a byte per earlier column.
pub type KernelRow = [u8; NCOLS];

/// The column of native symbol `sym`.
pub fn of_symbol(sym: u16) -> u16 {
    match sym {
        SYM_EMPTY => COL_EMPTY,
        s if s < NATIVE_LOW_END => s,
        s if (NATIVE_HIGH_START..NATIVE_HIGH_END).contains(&s) => s - GAP,
        _ => COL_OTHER,
    }
}

/// The symbol column `col` stands for (OTHER for a column no call maps to: arm64 leaves some).
pub fn symbol(col: u16) -> u16 {
    match col {
        COL_EMPTY => SYM_EMPTY,
        c if c < NATIVE_LOW_END => c,
        c if c < NATIVE_HIGH_END - GAP => c + GAP,
        _ => SYM_OTHER,
    }
}

/// `row` in the kernel's layout; the bytes of symbols without a column are ORed into OTHER's.
pub fn to_kernel(row: &Row) -> Box<KernelRow> {
    let mut out = Box::new([0u8; NCOLS]);
    for (sym, &bits) in row.iter().enumerate() {
        out[usize::from(of_symbol(sym as u16))] |= bits;
    }
    out
}

/// A kernel row in symbols.
pub fn from_kernel(row: &KernelRow) -> Box<Row> {
    let mut out = Box::new([0u8; NSYMBOLS]);
    for (col, &bits) in row.iter().enumerate() {
        out[usize::from(symbol(col as u16))] |= bits;
    }
    out
}

/// `table`'s rows in the kernel's layout, by column; the rows of symbols without a column are
/// ORed into OTHER's, and rows without a pair are left out.
pub fn kernel_table(table: &Table) -> BTreeMap<u16, Box<KernelRow>> {
    let mut out: BTreeMap<u16, Box<KernelRow>> = BTreeMap::new();
    for (&sym, row) in &table.rows {
        let row = to_kernel(row);
        if row.iter().all(|&b| b == 0) {
            continue;
        }
        let into = out
            .entry(of_symbol(sym))
            .or_insert_with(|| Box::new([0u8; NCOLS]));
        for (d, s) in into.iter_mut().zip(row.iter()) {
            *d |= s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::Abi;

    /// Whether the kernel keeps `sym` as itself (not folded into OTHER).
    fn kept(sym: u16) -> bool {
        symbol(of_symbol(sym)) == sym
    }

    #[test]
    fn every_native_call_has_a_column_of_its_own() {
        let mut seen = std::collections::HashSet::new();
        for sym in 0..SYM_OTHER {
            if Abi::Native.name(sym).is_some() {
                let col = of_symbol(sym);
                assert!(
                    kept(sym),
                    "{:?} ({sym}) has no column",
                    Abi::Native.name(sym)
                );
                assert!(usize::from(col) < NCOLS);
                assert!(seen.insert(col), "two calls share column {col}");
            }
        }
        // The crate's table is the real one, not an empty list that would pass the loop.
        assert!(seen.len() > 300, "only {} native calls", seen.len());
        assert_eq!(of_symbol(SYM_EMPTY), COL_EMPTY);
        assert_eq!(of_symbol(SYM_OTHER), COL_OTHER);
        assert_eq!(symbol(COL_OTHER), SYM_OTHER);
        assert_eq!(symbol(COL_EMPTY), SYM_EMPTY);
    }

    #[test]
    fn every_column_names_a_symbol_below_the_table() {
        for col in 0..NCOLS as u16 {
            let sym = symbol(col);
            assert!(usize::from(sym) < NSYMBOLS, "column {col} -> {sym}");
            assert!(
                of_symbol(sym) == col || sym == SYM_OTHER,
                "column {col} -> {sym}"
            );
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn numbers_no_x86_64_call_has_are_other() {
        // uretprobe is 335 and pidfd_send_signal 424; 400 and 509 are nothing.
        assert_eq!(of_symbol(335), 335);
        assert_eq!(symbol(of_symbol(424)), 424);
        assert_eq!(of_symbol(400), COL_OTHER);
        assert_eq!(of_symbol(509), COL_OTHER);
        assert!(!kept(400));
        // Every column names a distinct symbol, and back.
        for col in 0..NCOLS as u16 {
            assert_eq!(of_symbol(symbol(col)), col);
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn rows_of_numbers_without_a_column_fold_into_other() {
        let mut table = Table::default();
        let mut a = Box::new([0u8; NSYMBOLS]);
        a[400] = 0b01; // read (0) after syscall 400 at distance 1
        a[1] = 0b10;
        table.rows.insert(0, a);
        let mut b = Box::new([0u8; NSYMBOLS]);
        b[2] = 0b100;
        table.rows.insert(400, b.clone());
        let mut c = Box::new([0u8; NSYMBOLS]);
        c[2] = 0b001;
        table.rows.insert(SYM_OTHER, c);
        table.rows.insert(7, Box::new([0u8; NSYMBOLS]));
        let k = kernel_table(&table);
        assert_eq!(k.keys().copied().collect::<Vec<_>>(), vec![0, COL_OTHER]);
        assert_eq!(k[&0][usize::from(COL_OTHER)], 0b01);
        assert_eq!(k[&0][1], 0b10);
        assert_eq!(k[&COL_OTHER][2], 0b101);
        // Back in symbols, the pairs are OTHER's.
        let back = from_kernel(&k[&0]);
        assert_eq!(back[usize::from(SYM_OTHER)], 0b01);
        assert_eq!(back[400], 0);
        assert_eq!(from_kernel(&to_kernel(&b))[2], 0b100);
    }
}
