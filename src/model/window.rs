//! Sequence windows: the latest calls of one signal frame, kept as the kernel keeps them.

use crate::syscalls::SYM_EMPTY;

/// pH's sequence length: the current call and the 8 calls before it.
pub const WINDOW: usize = 9;
/// Lookahead distances 1..=8; distance `i` is bit `i - 1` of a pair byte.
pub const DISTANCES: usize = WINDOW - 1;
/// Slots in a frame's ring. The kernel wraps indices with a mask, so this must be a power of two;
/// keeping the same ring (not just 9 slots) makes a frame copy bit-for-bit what `fork` copies.
pub const RING: usize = 16;
/// Signal-handler frames per task; frame 0 is the interrupted program.
pub const SIGSTACK: usize = 8;

/// The earlier calls of a window: `prev[i]` is the call `i + 1` positions back.
pub type Prev = [u16; DISTANCES];

/// One sequence frame (`struct frame`): a ring of the latest symbols, the newest at `pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    win: [u16; RING],
    pos: u32,
}

impl Frame {
    /// A fresh frame (`frame_empty`): every slot is EMPTY, so the first calls pair with EMPTY.
    pub const EMPTY: Frame = Frame {
        win: [SYM_EMPTY; RING],
        pos: 0,
    };

    /// Shifts `c` in as the newest call and returns the 8 calls before it.
    #[inline]
    pub fn push(&mut self, c: u16) -> Prev {
        // u32 arithmetic wraps like the kernel's; RING divides 2^32, so the ring stays coherent.
        let pos = self.pos.wrapping_add(1);
        self.pos = pos;
        self.win[pos as usize & (RING - 1)] = c;
        std::array::from_fn(|i| self.win[pos.wrapping_sub(1 + i as u32) as usize & (RING - 1)])
    }

    /// The window as events carry it (`window_out`): oldest first, the newest call last.
    pub fn window(&self) -> [u16; WINDOW] {
        let start = self.pos.wrapping_sub(DISTANCES as u32);
        std::array::from_fn(|i| self.win[start.wrapping_add(i as u32) as usize & (RING - 1)])
    }
}

impl Default for Frame {
    fn default() -> Self {
        Frame::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u16 = SYM_EMPTY;

    #[test]
    fn fresh_frame_is_all_empty() {
        assert_eq!(Frame::EMPTY.window(), [E; WINDOW]);
    }

    #[test]
    fn push_returns_earlier_calls_newest_first() {
        let mut f = Frame::EMPTY;
        assert_eq!(f.push(1), [E; DISTANCES]);
        assert_eq!(f.push(2), [1, E, E, E, E, E, E, E]);
        assert_eq!(f.push(3), [2, 1, E, E, E, E, E, E]);
        assert_eq!(f.window(), [E, E, E, E, E, E, 1, 2, 3]);
    }

    #[test]
    fn ring_wraps_after_sixteen_calls() {
        let mut f = Frame::EMPTY;
        for c in 0..40 {
            f.push(c);
        }
        // Calls 31..=39 are the last nine; 39 is current.
        assert_eq!(f.window(), [31, 32, 33, 34, 35, 36, 37, 38, 39]);
        assert_eq!(f.push(40), [39, 38, 37, 36, 35, 34, 33, 32]);
    }

    #[test]
    fn position_wraps_at_u32_like_the_kernel() {
        let mut f = Frame {
            win: [E; RING],
            pos: u32::MAX - 2,
        };
        for c in 1..=5 {
            f.push(c);
        }
        assert_eq!(f.window(), [E, E, E, E, 1, 2, 3, 4, 5]);
    }
}
