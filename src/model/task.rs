//! Per-task state: which profile a task runs under, its signal frames and its locality frame.

use crate::profile::ProfileKey;

use super::locality::LocalityFrame;
use super::window::{Frame, SIGSTACK, WINDOW};

/// One traced task (`struct task_state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub(super) key: ProfileKey,
    /// Index into the model's profile list; the kernel's slot, never reused.
    pub(super) slot: usize,
    pub(super) frames: [Frame; SIGSTACK],
    pub(super) depth: u32,
    pub(super) overflow: u32,
    pub(super) lf: LocalityFrame,
    pub(super) count: u64,
    /// ebpfh lifecycle: this run (since exec or fork) taught the profile a new pair.
    pub(super) run_new: bool,
    /// ebpfh lifecycle: this run began at a fork (`RUN_FORKED`), not at an exec.
    pub(super) run_forked: bool,
    /// Highest LFC of this run; unlike the locality frame's maximum, no reset clears it.
    pub(super) run_lfc: u32,
}

impl Task {
    /// `task_fresh`: a new image (or a task adopted at start-up) has one empty frame and a fresh
    /// locality frame.
    pub(super) fn fresh(key: ProfileKey, slot: usize) -> Self {
        Task {
            key,
            slot,
            frames: [Frame::EMPTY; SIGSTACK],
            depth: 0,
            overflow: 0,
            lf: LocalityFrame::FRESH,
            count: 0,
            run_new: false,
            run_forked: false,
            run_lfc: 0,
        }
    }

    /// `sched_process_fork`: the child continues the parent's current sequence in its frame 0, so
    /// forking cannot break a sequence; everything else starts over. (The kernel leaves the
    /// child's other frames zeroed; they are emptied on every push, so no call ever sees them.)
    pub(super) fn forked_from(parent: &Task) -> Self {
        let mut child = Task::fresh(parent.key, parent.slot);
        child.frames[0] = *parent.frame();
        child.run_forked = true;
        child
    }

    /// `signal_deliver` with a user handler: the handler's calls get a new empty frame. Past the
    /// last frame only the overflow count grows, so every later rt_sigreturn still has its push
    /// to undo and the frames stay matched (docs/algorithm.md, "A fixed signal stack whose
    /// overflow desynchronises").
    pub(super) fn push_signal(&mut self) {
        let d = self.depth + 1;
        if d as usize >= SIGSTACK || self.overflow != 0 {
            self.overflow += 1;
            return;
        }
        self.depth = d;
        self.frames[d as usize & (SIGSTACK - 1)] = Frame::EMPTY;
    }

    /// After rt_sigreturn was recorded as the handler's last call: undo the latest push.
    pub(super) fn pop_signal(&mut self) {
        if self.overflow != 0 {
            self.overflow -= 1;
        } else if self.depth != 0 {
            self.depth -= 1;
        }
    }

    /// The frame calls go to now.
    pub fn frame(&self) -> &Frame {
        &self.frames[self.depth as usize & (SIGSTACK - 1)]
    }

    /// The current frame's window, oldest first.
    pub fn window(&self) -> [u16; WINDOW] {
        self.frame().window()
    }

    /// The profile this task runs under.
    pub fn key(&self) -> ProfileKey {
        self.key
    }

    /// Index of the current frame (0 = not in a signal handler).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Handler entries beyond the last frame that still await their rt_sigreturn.
    pub fn overflow(&self) -> u32 {
        self.overflow
    }

    pub fn locality(&self) -> &LocalityFrame {
        &self.lf
    }

    pub fn lfc(&self) -> u32 {
        self.lf.lfc()
    }

    pub fn lfc_max(&self) -> u32 {
        self.lf.lfc_max()
    }

    /// Whether the tolerize-limit event for the current crossing was sent.
    pub fn tolerized(&self) -> bool {
        self.lf.tolerized
    }

    /// Calls this task made since its exec or fork.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether this run taught its profile a new pair (ebpfh lifecycle).
    pub fn run_new(&self) -> bool {
        self.run_new
    }

    /// Highest LFC of this run.
    pub fn run_lfc(&self) -> u32 {
        self.run_lfc
    }
}
