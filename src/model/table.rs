//! Lookahead tables in the hot-path layout: a fixed index of 512 optional 512-byte rows.
//!
//! The kernel keeps `u16 train_row[NCOLS]` naming rows in a pool, in columns rather than symbols
//! (`src/columns.rs`; training and testing may name one row while their data is the same; see
//! docs/design.md, "Profile memory"); here the index holds the rows
//! themselves, so a test is one indexed load per distance and nothing is hashed or searched.
//! [`crate::profile::Table`] (sparse, ordered) is the exchange format at the model's edges.

use crate::profile::{Row, Table};
use crate::syscalls::NSYMBOLS;

use super::window::{Prev, DISTANCES};

/// Every distance missed: what a symbol without a row scores.
pub const ALL_MISSED: u32 = (1 << DISTANCES) - 1;

/// One lookahead table; a row exists once its symbol was learned (or copied) as a current call.
#[derive(Clone, PartialEq, Eq)]
pub struct Rows {
    rows: Box<[Option<Box<Row>>; NSYMBOLS]>,
}

impl Default for Rows {
    fn default() -> Self {
        Rows {
            rows: Box::new(std::array::from_fn(|_| None)),
        }
    }
}

impl Rows {
    /// `row_misses`: bitmask of the distances (bit `i - 1` = distance `i`) whose pair with the
    /// current call `c` is absent. A symbol without a row misses everything, EMPTY included.
    #[inline]
    pub fn misses(&self, c: u16, prev: &Prev) -> u32 {
        let Some(row) = &self.rows[usize::from(c) & (NSYMBOLS - 1)] else {
            return ALL_MISSED;
        };
        let mut miss = 0;
        for (i, &p) in prev.iter().enumerate() {
            // Masking like the kernel keeps the index in range without a bounds check.
            let hit = (row[usize::from(p) & (NSYMBOLS - 1)] >> i) & 1;
            miss |= (u32::from(hit) ^ 1) << i;
        }
        miss
    }

    /// `row_empty`: whether `c` has no pair at all (no row, or a row a reset zeroed): a call
    /// the profile never made.
    pub fn lacks(&self, c: u16) -> bool {
        self.rows[usize::from(c) & (NSYMBOLS - 1)]
            .as_ref()
            .is_none_or(|row| row.iter().all(|&b| b == 0))
    }

    /// `row_learn`: OR the pairs of the missed distances into `c`'s row, creating it if needed.
    #[inline]
    pub fn learn(&mut self, c: u16, prev: &Prev, miss: u32) {
        let row = self.rows[usize::from(c) & (NSYMBOLS - 1)]
            .get_or_insert_with(|| Box::new([0; NSYMBOLS]));
        for (i, &p) in prev.iter().enumerate() {
            if miss & (1 << i) != 0 {
                row[usize::from(p) & (NSYMBOLS - 1)] |= 1 << i;
            }
        }
    }

    /// `OP_COPY_TO_TEST`: become an exact copy of `src`. A symbol `src` has no row for keeps its
    /// row here but zeroed, which means the same as no row (the kernel never frees rows either).
    pub fn copy_from(&mut self, src: &Rows) {
        for (dst, src) in self.rows.iter_mut().zip(src.rows.iter()) {
            match (src, dst.as_deref_mut()) {
                (None, Some(d)) => d.fill(0),
                (None, None) => {}
                (Some(s), Some(d)) => d.copy_from_slice(&s[..]),
                (Some(s), None) => *dst = Some(s.clone()),
            }
        }
    }

    /// `OP_MERGE_TO_TEST`: OR every pair of `src` in, creating the rows `src` has.
    pub fn merge_from(&mut self, src: &Rows) {
        for (dst, src) in self.rows.iter_mut().zip(src.rows.iter()) {
            if let Some(s) = src {
                let d = dst.get_or_insert_with(|| Box::new([0; NSYMBOLS]));
                for (d, s) in d.iter_mut().zip(s.iter()) {
                    *d |= s;
                }
            }
        }
    }

    /// `OP_ZERO_TRAIN` / `OP_ZERO_BOTH`: clear every pair, keeping the rows.
    pub fn zero(&mut self) {
        for row in self.rows.iter_mut().flatten() {
            row.fill(0);
        }
    }

    /// Number of lookahead pairs (set bits).
    pub fn pairs(&self) -> u64 {
        self.rows
            .iter()
            .flatten()
            .flat_map(|r| r.iter())
            .map(|b| u64::from(b.count_ones()))
            .sum()
    }

    /// The sparse form, holding only rows with a pair (as the kernel reader reports a table).
    pub fn to_table(&self) -> Table {
        let mut t = Table::default();
        for (c, row) in self.rows.iter().enumerate() {
            if let Some(row) = row.as_ref().filter(|r| r.iter().any(|&b| b != 0)) {
                t.rows.insert(c as u16, row.clone());
            }
        }
        t
    }

    /// From the sparse form; row numbers are taken modulo the table width, as the loader does.
    pub fn from_table(t: &Table) -> Rows {
        let mut rows = Rows::default();
        for (&c, row) in &t.rows {
            rows.rows[usize::from(c) % NSYMBOLS] = Some(row.clone());
        }
        rows
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.rows.iter().flatten().count();
        write!(f, "Rows({n} rows, {} pairs)", self.pairs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::SYM_EMPTY;

    const E: u16 = SYM_EMPTY;

    #[test]
    fn missing_row_misses_every_distance() {
        assert_eq!(Rows::default().misses(3, &[E; DISTANCES]), 0xff);
    }

    #[test]
    fn learned_pairs_hit_and_others_miss() {
        let mut t = Rows::default();
        let prev = [1, 2, E, E, E, E, E, E];
        t.learn(3, &prev, 0xff);
        assert_eq!(t.misses(3, &prev), 0);
        assert_eq!(t.to_table().get(3, 1), 0b0000_0001);
        assert_eq!(t.to_table().get(3, 2), 0b0000_0010);
        assert_eq!(t.to_table().get(3, E), 0b1111_1100);
        // 2 one back was seen only at distance 2; E at distance 1 never.
        assert_eq!(t.misses(3, &[2, E, E, E, E, E, E, E]), 0b0000_0011);
        assert_eq!(t.pairs(), 8);
    }

    #[test]
    fn learn_sets_only_missed_distances() {
        let mut t = Rows::default();
        t.learn(3, &[1; DISTANCES], 0b1000_0001);
        assert_eq!(t.to_table().get(3, 1), 0b1000_0001);
    }

    #[test]
    fn copy_makes_an_exact_copy_and_zeroes_stale_rows() {
        let mut train = Rows::default();
        let mut test = Rows::default();
        test.learn(7, &[7; DISTANCES], 0xff);
        train.learn(3, &[1; DISTANCES], 0xff);
        test.copy_from(&train);
        assert_eq!(test.to_table(), train.to_table());
        assert_eq!(test.to_table().get(7, 7), 0);
        assert_eq!(test.misses(7, &[7; DISTANCES]), 0xff);
    }

    /// A row a reset zeroed knows no more than no row: the call is unknown either way.
    #[test]
    fn lacks_is_true_without_a_row_or_with_a_zeroed_one() {
        let mut r = Rows::default();
        assert!(r.lacks(3));
        r.learn(3, &[E; DISTANCES], 1);
        assert!(!r.lacks(3));
        assert!(r.lacks(4));
        r.zero();
        assert!(r.lacks(3));
    }

    #[test]
    fn table_round_trip_drops_empty_rows() {
        let mut t = Rows::default();
        t.learn(3, &[1; DISTANCES], 0x0f);
        t.learn(4, &[1; DISTANCES], 0x0f);
        let mut back = Rows::from_table(&t.to_table());
        assert_eq!(back.to_table(), t.to_table());
        back.zero();
        assert_eq!(back.pairs(), 0);
        assert!(back.to_table().rows.is_empty());
    }
}
