//! The locality frame (pH's ALF): which of a task's last 128 calls were anomalous.

/// Cells in a locality frame, one per call.
pub const LOCALITY: usize = 128;

/// 128 one-bit cells, a cursor and the running count (LFC) with its maximum, plus the flag that
/// the tolerize-limit event was already sent. They live and reset together
/// (docs/algorithm.md, "Locality counter apart from its window").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalityFrame {
    cells: [u64; LOCALITY / 64],
    pos: u32,
    lfc: u32,
    lfc_max: u32,
    /// The LFC is above tolerize_limit and the event for this crossing has been sent.
    pub(crate) tolerized: bool,
}

impl LocalityFrame {
    /// A cleared frame whose cursor sits on the last cell, so the next call lands on cell 0 (pH).
    pub const FRESH: LocalityFrame = LocalityFrame {
        cells: [0; LOCALITY / 64],
        pos: LOCALITY as u32 - 1,
        lfc: 0,
        lfc_max: 0,
        tolerized: false,
    };

    /// `lf_reset`: forget every cell, the counts and the tolerize flag.
    pub fn reset(&mut self) {
        *self = Self::FRESH;
    }

    /// `lf_feed`: advance one cell and record whether this call was anomalous. A cell that comes
    /// round again drops its old call, so the count is of anomalies among the last 128 calls.
    #[inline]
    pub fn feed(&mut self, anomalous: bool) {
        let pos = self.pos.wrapping_add(1) & (LOCALITY as u32 - 1);
        let bit = 1u64 << (pos & 63);
        let word = &mut self.cells[(pos >> 6) as usize];
        self.pos = pos;
        if anomalous {
            if *word & bit == 0 {
                *word |= bit;
                self.lfc += 1;
                self.lfc_max = self.lfc_max.max(self.lfc);
            }
        } else if *word & bit != 0 {
            *word &= !bit;
            self.lfc -= 1;
        }
    }

    /// LFC: anomalous calls among the frame's cells.
    pub fn lfc(&self) -> u32 {
        self.lfc
    }

    /// Highest LFC since the last reset.
    pub fn lfc_max(&self) -> u32 {
        self.lfc_max
    }

    /// Index of the cell the latest call landed on.
    pub fn cursor(&self) -> usize {
        self.pos as usize
    }

    /// Whether cell `i` holds an anomalous call.
    pub fn cell(&self, i: usize) -> bool {
        self.cells[i / 64] & (1 << (i % 64)) != 0
    }

    /// Set cells counted directly; always equals [`LocalityFrame::lfc`].
    pub fn set_cells(&self) -> u32 {
        self.cells.iter().map(|w| w.count_ones()).sum()
    }
}

impl Default for LocalityFrame {
    fn default() -> Self {
        Self::FRESH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_feed_after_reset_lands_on_cell_zero() {
        let mut lf = LocalityFrame::FRESH;
        lf.feed(true);
        assert!(lf.cell(0));
        assert_eq!((lf.cursor(), lf.lfc(), lf.lfc_max()), (0, 1, 1));
    }

    #[test]
    fn an_anomaly_leaves_the_frame_128_calls_later() {
        let mut lf = LocalityFrame::FRESH;
        lf.feed(true); // cell 0
        lf.feed(true); // cell 1
        for _ in 2..128 {
            lf.feed(false);
        }
        assert_eq!(lf.lfc(), 2, "cells 0 and 1 are still inside the frame");
        lf.feed(false); // wraps onto cell 0
        assert_eq!(lf.lfc(), 1);
        lf.feed(false); // cell 1
        assert_eq!((lf.lfc(), lf.lfc_max()), (0, 2));
    }

    #[test]
    fn a_set_cell_counts_once() {
        let mut lf = LocalityFrame::FRESH;
        for _ in 0..300 {
            lf.feed(true);
        }
        assert_eq!((lf.lfc(), lf.lfc_max(), lf.set_cells()), (128, 128, 128));
    }
}
