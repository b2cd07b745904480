//! The kernel program: open, size, load, attach, and read or write its maps.
//!
//! This is the only module that touches libbpf-rs. Records are the skeleton's own types
//! (generated from `bpf/ebpfh.h`), never hand-written mirrors.

use std::io::Read;
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, Iter, Link, MapCore, MapFlags, OpenObject};

use crate::columns::{self, KernelRow, NCOLS};
use crate::profile::{Profile, ProfileKey, Table};
use crate::script::{self, Interpreter};
use crate::settings::Settings;

#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/ebpfh.skel.rs"));
}

pub use skel::types;
use skel::{EbpfhSkel, EbpfhSkelBuilder};

// SAFETY: these are plain C records (integers and arrays only); every bit pattern is valid.
unsafe impl plain::Plain for types::ev_header {}
// SAFETY: as above.
unsafe impl plain::Plain for types::ev_profile_created {}
// SAFETY: as above.
unsafe impl plain::Plain for types::ev_anomaly {}
// SAFETY: as above.
unsafe impl plain::Plain for types::ev_state {}
// SAFETY: as above.
unsafe impl plain::Plain for types::ev_delay {}
// SAFETY: as above.
unsafe impl plain::Plain for types::ev_execve_denied {}
// SAFETY: as above.
unsafe impl plain::Plain for types::profile {}
// SAFETY: as above.
unsafe impl plain::Plain for types::row {}
// SAFETY: as above.
unsafe impl plain::Plain for types::task_record {}
// SAFETY: as above.
unsafe impl plain::Plain for types::command_args {}
// SAFETY: as above.
unsafe impl plain::Plain for types::profile_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::import_args {}
// SAFETY: as above.
unsafe impl plain::Plain for types::task_state {}
// SAFETY: as above.
unsafe impl plain::Plain for types::trace_call {}
// SAFETY: as above.
unsafe impl plain::Plain for types::trace_task {}
// SAFETY: as above.
unsafe impl plain::Plain for types::interp_name {}
// SAFETY: as above.
unsafe impl plain::Plain for types::interp_rule {}
// SAFETY: as above (the `.data.settings` section: one `struct settings`).
unsafe impl plain::Plain for types::data_settings {}

impl From<types::profile_key> for ProfileKey {
    fn from(k: types::profile_key) -> Self {
        ProfileKey {
            kdev: k.dev,
            ino: k.ino,
            script: k.script,
        }
    }
}

impl From<ProfileKey> for types::profile_key {
    fn from(k: ProfileKey) -> Self {
        types::profile_key {
            dev: k.kdev,
            ino: k.ino,
            script: k.script,
        }
    }
}

/// An operator command on one profile (`enum command_op` in `bpf/ebpfh.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Command {
    Normalize = types::command_op::CMD_NORMALIZE.0,
    Sensitize = types::command_op::CMD_SENSITIZE.0,
    Tolerize = types::command_op::CMD_TOLERIZE.0,
    Reset = types::command_op::CMD_RESET.0,
    Freeze = types::command_op::CMD_FREEZE.0,
    Accept = types::command_op::CMD_ACCEPT.0,
}

/// Number of kernel event kinds, counting the unused kind 0 (`EV_KIND_MAX`).
pub const EVENT_KINDS: usize = types::event_kind::EV_KIND_MAX.0 as usize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("no such profile")]
    NoProfile,
    #[error("the profile has no training data yet, so it cannot be normalized")]
    Untrained,
    #[error("the profile is being normalized right now; try again")]
    Busy,
    #[error("the profile is not normal yet, so nothing it learned is pending")]
    NotNormal,
    #[error("the profile has nothing pending to accept")]
    NothingPending,
    #[error("the kernel could not run the command: {0}")]
    Kernel(String),
}

/// A traced task as the `dump_tasks` iterator reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TaskInfo {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub slot: u32,
    pub lfc: u32,
    pub lfc_max: u32,
    pub signal_depth: u32,
    pub count: u64,
    /// The task's cgroup v2 id.
    pub cgroup: u64,
}

/// How much the kernel side may hold; fixed at load time.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    pub profiles: u32,
    pub rows: u32,
    pub ring_bytes: u32,
    /// The trace ring buffer; only used while recording.
    pub trace_bytes: u32,
    /// Profiles one non-root uid may create (0 = no limit).
    pub uid_quota: u32,
    /// Profile slots only root may fill.
    pub root_reserve: u32,
}

impl Capacity {
    /// 4096 profiles x 1.7 KiB index + 65536 rows x 400 B = 32 MiB of locked kernel memory.
    pub const DEFAULT: Capacity = Capacity {
        profiles: 4096,
        rows: 65536,
        ring_bytes: 4 << 20,
        trace_bytes: 64 << 10,
        uid_quota: Capacity::default_share(4096),
        root_reserve: Capacity::default_share(4096),
    };

    /// The default per-uid quota and root reserve for a table of `profiles`: an eighth each, so
    /// no unprivileged user can take more than an eighth of the table, and root always finds an
    /// eighth free.
    pub const fn default_share(profiles: u32) -> u32 {
        profiles / 8
    }
    /// The most rows `--max-rows` may ask for: the kernel's row numbers are 16 bits.
    pub const MAX_ROWS: u32 = 65536;
    /// The trace ring buffer `ebpfh record` asks for: a recorder must keep up with every call.
    pub const RECORD_TRACE_BYTES: u32 = 64 << 20;

    /// The slots profiles can take: slot 0 means "no profile".
    pub const fn slots(&self) -> u32 {
        self.profiles.saturating_sub(1)
    }

    /// The slots other users' programs can take: all but the root reserve.
    pub const fn room(&self) -> u32 {
        self.slots().saturating_sub(self.root_reserve)
    }

    /// Refuses a root reserve or a per-uid quota the table cannot honour: a reserve that leaves
    /// other users no slot at all, a quota larger than what is left to them (it could never
    /// stop anyone).
    pub fn check(&self) -> Result<(), CapacityError> {
        let (profiles, reserve, quota) = (self.profiles, self.root_reserve, self.uid_quota);
        if reserve >= self.slots() {
            return Err(CapacityError::ReserveTooLarge {
                reserve,
                profiles,
                slots: self.slots(),
            });
        }
        let room = self.room();
        if quota > room {
            return Err(CapacityError::QuotaTooLarge {
                quota,
                profiles,
                reserve,
                room,
            });
        }
        Ok(())
    }
}

/// A `Capacity` whose quotas cannot work (see `Capacity::check`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapacityError {
    #[error(
        "--root-reserve {reserve} leaves no profile slot for other users' programs: \
         --max-profiles {profiles} has {slots} slots (slot 0 is never used); \
         use a smaller --root-reserve or a larger --max-profiles"
    )]
    ReserveTooLarge {
        reserve: u32,
        profiles: u32,
        slots: u32,
    },
    #[error(
        "--uid-quota {quota} could never stop a user: with --max-profiles {profiles} and \
         --root-reserve {reserve}, other users' programs can take at most {room} {} in all; \
         use at most {room}, or 0 for no limit",
        if *room == 1 { "slot" } else { "slots" }
    )]
    QuotaTooLarge {
        quota: u32,
        profiles: u32,
        reserve: u32,
        room: u32,
    },
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity::DEFAULT
    }
}

/// Counters the kernel keeps about what it could not do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub other_ids: u64,
    pub rows_full: u64,
    pub profiles_full: u64,
    pub tasks_failed: u64,
    pub sigstack_overflow: u64,
    pub index_races: u64,
    /// Execs left untraced because a non-root uid had used its quota of profiles.
    pub quota_refused: u64,
    /// Ring-buffer reservations that failed, per event kind (index = `event_kind`).
    pub events_lost: [u64; EVENT_KINDS],
    pub profiles_used: u32,
    pub rows_used: u32,
    /// Trace records dropped because the trace ring buffer was full.
    pub trace_lost: u64,
}

impl Stats {
    pub fn total_lost(&self) -> u64 {
        self.events_lost.iter().sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the kernel refused to {what}")]
    Kernel {
        what: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("the profile table is full ({0} profiles); start with a larger --max-profiles")]
    ProfilesFull(u32),
    #[error("the lookahead row pool is full ({0} rows); start with a larger --max-rows")]
    RowsFull(u32),
}

fn kernel(what: &'static str) -> impl FnOnce(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Kernel { what, source }
}

pub struct Kernel<'obj> {
    skel: EbpfhSkel<'obj>,
    /// Interior mutability so the monitor can detach while it still reads the maps.
    links: std::cell::RefCell<Vec<Link>>,
    cap: Capacity,
    /// The execve-abort program (BPF LSM) is loaded.
    execve_abort: bool,
    /// Rows reserved for staging imports (first, how many); see `enum import_op`.
    staging: std::cell::Cell<(u32, u32)>,
}

/// Why an import could not be applied to the kernel; nothing was changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("the lookahead row pool is full; restart the monitor with a larger --max-rows")]
    RowsFull,
    #[error("the profile table is full; restart the monitor with a larger --max-profiles")]
    ProfilesFull,
    #[error("the profile kept changing state while it was being merged; try again")]
    Busy,
    #[error("the profile is gone")]
    NoProfile,
    #[error("the kernel could not run the import: {0}")]
    Kernel(String),
}

impl<'obj> Kernel<'obj> {
    /// Opens, sizes and loads the program (verifier runs here); nothing is attached yet.
    pub fn load(
        obj: &'obj mut MaybeUninit<OpenObject>,
        cap: Capacity,
        settings: &Settings,
        monitor_tgid: u32,
    ) -> Result<Self, LoadError> {
        let mut open = EbpfhSkelBuilder::default()
            .open(obj)
            .map_err(kernel("open the BPF object"))?;
        size_maps(&mut open.maps, cap)?;
        let maps = &mut open.maps;
        if let Some(ro) = maps.rodata_data.as_deref_mut() {
            ro.max_profiles = cap.profiles;
            ro.max_rows = cap.rows;
            ro.script_profiles = u32::from(settings.script_profiles);
            ro.uid_quota = cap.uid_quota;
            ro.root_reserve = cap.root_reserve;
        }
        if let Some(s) = maps.data_settings_data.as_deref_mut() {
            write_settings(&mut s.settings, settings, monitor_tgid);
        }
        // The LSM program makes the whole object fail to load where BPF LSM is refused: load it
        // only when asked for and probed to work.
        let execve_abort = settings.abort_execve > 0 && lsm_works();
        open.progs.exec_check.set_autoload(execve_abort);
        let skel = open.load().map_err(kernel("load the BPF program"))?;
        for interp in &settings.interpreters {
            set_interpreter(&skel, interp)?;
        }
        let k = Kernel {
            skel,
            links: Default::default(),
            cap,
            execve_abort,
            staging: Default::default(),
        };
        k.sync_clock();
        Ok(k)
    }

    /// Attaches the tracepoint programs; from here on, calls are processed.
    pub fn attach(&self) -> Result<(), LoadError> {
        let p = &self.skel.progs;
        for prog in [
            &p.sched_process_fork,
            &p.sched_process_exec,
            &p.sched_process_exit,
            &p.signal_deliver,
            &p.sys_enter,
        ] {
            let link = prog
                .attach()
                .map_err(kernel("attach a tracepoint program"))?;
            self.links.borrow_mut().push(link);
        }
        if self.execve_abort {
            let link = self
                .skel
                .progs
                .exec_check
                .attach()
                .map_err(kernel("attach the execve check"))?;
            self.links.borrow_mut().push(link);
        }
        Ok(())
    }

    /// Whether execve abort is active (it needs the BPF LSM).
    pub fn execve_abort(&self) -> bool {
        self.execve_abort
    }

    /// Stops processing: the maps stay readable, nothing changes them any more.
    pub fn detach(&self) {
        self.links.borrow_mut().clear();
    }

    /// Gives every running process a profile and a fresh window (the `iter/task` sweep).
    pub fn adopt_running_tasks(&self) -> Result<(), LoadError> {
        run_iter(&self.skel.progs.adopt_tasks).map(drop)
    }

    /// Publishes the current TAI time to the kernel's per-call clock (`clock_tai_ns` in the C
    /// code). A map update, not a store through the mmap, so it works through a shared reference.
    pub fn sync_clock(&self) {
        let now = crate::clock::tai_now();
        if let Err(e) =
            self.skel
                .maps
                .data_clock
                .update(&0u32.to_ne_bytes(), &now.to_ne_bytes(), MapFlags::ANY)
        {
            log::warn!("cannot update the kernel's clock: {e}");
        }
    }

    /// Changes the tunables while the programs run. A map update (like [`Kernel::sync_clock`]),
    /// not a store through the mmap, so the monitor can do it through a shared reference.
    pub fn set_settings(&self, settings: &Settings, monitor_tgid: u32) -> Result<(), LoadError> {
        let mut section = types::data_settings {
            settings: self.settings(),
        };
        write_settings(&mut section.settings, settings, monitor_tgid);
        // SAFETY: `data_settings` is a plain repr(C) record of integers; viewing it as bytes is sound.
        let bytes = unsafe { plain::as_bytes(&section) };
        self.skel
            .maps
            .data_settings
            .update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
            .map_err(kernel("change the settings"))
    }

    pub fn settings(&self) -> types::settings {
        self.skel
            .maps
            .data_settings_data
            .as_deref()
            .map(|d| d.settings)
            .unwrap_or_default()
    }

    /// What the kernel maps were sized for.
    pub fn capacity(&self) -> Capacity {
        self.cap
    }

    pub fn events_map(&self) -> &dyn MapCore {
        &self.skel.maps.events
    }

    /// The ring buffer of trace records (`struct trace_call` / `struct trace_task`).
    pub fn trace_map(&self) -> &dyn MapCore {
        &self.skel.maps.trace
    }

    pub fn stats(&self) -> Stats {
        let mut st = Stats::default();
        if let Some(bss) = self.skel.maps.bss_data.as_deref() {
            use types::stat_index as I;
            let s = |i: I| bss.stats[i.0 as usize];
            st.other_ids = s(I::STAT_OTHER_IDS);
            st.rows_full = s(I::STAT_ROWS_FULL);
            st.profiles_full = s(I::STAT_PROFILES_FULL);
            st.tasks_failed = s(I::STAT_TASKS_FAILED);
            st.sigstack_overflow = s(I::STAT_SIGSTACK_OVERFLOW);
            st.index_races = s(I::STAT_INDEX_RACE);
            st.quota_refused = s(I::STAT_QUOTA_REFUSED);
            st.events_lost = bss.lost;
            st.trace_lost = bss.trace_lost;
        }
        if let Some(d) = self.skel.maps.data_data.as_deref() {
            // Slot 0 and row 0 are reserved, so N entries hold N - 1; the counters run past
            // the end while the kernel refuses new ones.
            st.profiles_used = used(d.next_profile, self.cap.profiles);
            st.rows_used = used(d.next_row, self.cap.rows);
        }
        st
    }

    /// Each loaded program's name, run time (ns) and run count, as the kernel counts them while
    /// `kernel.bpf_stats_enabled` is 1 (0 otherwise).
    pub fn program_stats(&self) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        for prog in self.skel.object().progs() {
            // SAFETY: the program belongs to the loaded object, which outlives this call.
            let fd =
                unsafe { libbpf_rs::libbpf_sys::bpf_program__fd(prog.as_libbpf_object().as_ptr()) };
            if fd < 0 {
                continue; // not loaded (the LSM program where BPF LSM is off)
            }
            let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of_val(&info) as u32;
            // SAFETY: `info` is a plain C record of `len` bytes that the kernel fills in.
            let rc = unsafe {
                libbpf_rs::libbpf_sys::bpf_obj_get_info_by_fd(fd, (&raw mut info).cast(), &mut len)
            };
            if rc == 0 {
                let name = prog.name().to_string_lossy().into_owned();
                out.push((name, info.run_time_ns, info.run_cnt));
            }
        }
        out
    }

    fn raw_profile(&self, slot: u32) -> Option<types::profile> {
        let bytes = self
            .skel
            .maps
            .profiles
            .lookup(&slot.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        let mut p = types::profile::default();
        plain::copy_from_bytes(&mut p, &bytes).ok()?;
        Some(p)
    }

    fn raw_row(&self, r: u32) -> Option<Box<KernelRow>> {
        if r == 0 {
            return None;
        }
        let bytes = self
            .skel
            .maps
            .rows
            .lookup(&r.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        let row: KernelRow = bytes.as_slice().try_into().ok()?;
        Some(Box::new(row))
    }

    /// A kernel table (indexed by column) in symbols.
    fn table(&self, index: &[u16; NCOLS]) -> Table {
        let mut t = Table::default();
        for (col, &r) in index.iter().enumerate() {
            if let Some(row) = self.raw_row(u32::from(r)) {
                if row.iter().any(|&b| b != 0) {
                    t.rows
                        .insert(columns::symbol(col as u16), columns::from_kernel(&row));
                }
            }
        }
        t
    }

    /// Runs an operator command on the profile in `slot`, in the kernel.
    pub fn command(&self, slot: u32, cmd: Command) -> Result<(), CommandError> {
        let mut args = types::command_args {
            slot,
            op: cmd as u32,
            ..Default::default()
        };
        run_syscall_prog(&self.skel.progs.command, &mut args).map_err(CommandError::Kernel)?;
        use types::bpf_constants as k;
        match -args.result {
            0 => Ok(()),
            e if e == k::K_ENOENT.0 as i32 => Err(CommandError::NoProfile),
            e if e == k::K_ENODATA.0 as i32 && cmd == Command::Accept => {
                Err(CommandError::NothingPending)
            }
            e if e == k::K_ENODATA.0 as i32 => Err(CommandError::Untrained),
            e if e == k::K_EAGAIN.0 as i32 => Err(CommandError::NotNormal),
            e if e == k::K_EBUSY.0 as i32 => Err(CommandError::Busy),
            e => Err(CommandError::Kernel(
                std::io::Error::from_raw_os_error(e).to_string(),
            )),
        }
    }

    /// Every traced task, from the `dump_tasks` iterator.
    pub fn tasks(&self) -> Result<Vec<TaskInfo>, LoadError> {
        let buf = run_iter(&self.skel.progs.dump_tasks)?;
        let size = std::mem::size_of::<types::task_record>();
        Ok(buf
            .chunks_exact(size)
            .map(|chunk| {
                let mut r = types::task_record::default();
                plain::copy_from_bytes(&mut r, chunk).expect("chunk has the record's size");
                let comm: Vec<u8> = r.comm.iter().map(|&c| c as u8).collect();
                let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                TaskInfo {
                    pid: r.tgid,
                    tid: r.tid,
                    ppid: r.ppid,
                    uid: r.uid,
                    comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
                    slot: r.profile,
                    lfc: r.lfc,
                    lfc_max: r.lfc_max,
                    signal_depth: r.depth,
                    count: r.count,
                    cgroup: r.cgroup,
                }
            })
            .collect())
    }

    /// Sets an executable's response policy: `true` = respond to it (see `respond_listed`),
    /// `false` = never respond to it.
    pub fn set_policy(&self, key: ProfileKey, respond: bool) -> Result<(), LoadError> {
        let k = types::profile_key::from(key);
        // SAFETY: plain C record.
        let bytes = unsafe { plain::as_bytes(&k) };
        use types::response_policy as p;
        let value = if respond {
            p::POLICY_TARGET
        } else {
            p::POLICY_ALLOW
        };
        let value = value.0 as u8; // the map's value is one byte (src/abi.rs checks the fit)
        self.skel
            .maps
            .policy
            .update(bytes, &[value], MapFlags::ANY)
            .map_err(kernel("set a response policy"))
    }

    /// Counts `n` profiles as created by `uid` (the profiles loaded at start), so the quota holds
    /// across restarts.
    pub fn count_owned(&self, uid: u32, n: u32) -> Result<(), LoadError> {
        self.skel
            .maps
            .uid_profiles
            .update(&uid.to_ne_bytes(), &n.to_ne_bytes(), MapFlags::ANY)
            .map_err(kernel("count a user's profiles"))
    }

    /// Slot of the profile with this key, if the kernel has one.
    pub fn slot_of(&self, key: ProfileKey) -> Option<u32> {
        let k = types::profile_key::from(key);
        // SAFETY: plain C record.
        let bytes = unsafe { plain::as_bytes(&k) };
        let v = self
            .skel
            .maps
            .profile_index
            .lookup(bytes, MapFlags::ANY)
            .ok()??;
        Some(u32::from_ne_bytes(v.as_slice().try_into().ok()?))
    }

    /// Slot of the profile task `tid` runs under, read through a pidfd (task storage's key).
    pub fn slot_of_task(&self, tid: u32) -> Option<u32> {
        let fd = pidfd_open(tid)?;
        let v = self
            .skel
            .maps
            .tasks
            .lookup(&fd.to_ne_bytes(), MapFlags::ANY);
        // SAFETY: `fd` was returned by pidfd_open above and is closed exactly once, here.
        unsafe { libc_close(fd) };
        let v = v.ok()??;
        let mut ts = types::task_state::default();
        plain::copy_from_bytes(&mut ts, &v).ok()?;
        Some(ts.profile).filter(|&s| s != 0)
    }

    /// The state bits of one profile (cheaper than reading its tables).
    pub fn profile_state(&self, slot: u32) -> Option<u32> {
        self.raw_profile(slot).map(|p| p.state)
    }

    /// One profile without its tables (exe empty, tables empty): cheap enough to read every
    /// profile every second for the dashboard's rates.
    pub fn profile_counters(&self, slot: u32) -> Option<Profile> {
        let p = self.raw_profile(slot)?;
        if p.key.dev == 0 && p.key.ino == 0 {
            return None;
        }
        Some(Profile {
            key: p.key.into(),
            state: p.state,
            count: p.count,
            train_count: p.train_count,
            last_mod_count: p.last_mod_count,
            sequences: p.sequences,
            anomalies: p.anomalies,
            normal_time: p.normal_time,
            life: life(&p),
            ..Profile::default()
        })
    }

    /// Reads one profile (exe left empty: the kernel does not know paths).
    pub fn profile(&self, slot: u32) -> Option<Profile> {
        let p = self.raw_profile(slot)?;
        if p.key.dev == 0 && p.key.ino == 0 {
            return None;
        }
        Some(Profile {
            key: p.key.into(),
            exe: String::new(),
            identity: None,
            script: String::new(),
            owner: 0,
            state: p.state,
            count: p.count,
            train_count: p.train_count,
            last_mod_count: p.last_mod_count,
            sequences: p.sequences,
            anomalies: p.anomalies,
            normal_time: p.normal_time,
            life: life(&p),
            train: self.table(&p.train_row),
            test: self.table(&p.test_row),
        })
    }

    /// Slot numbers of every profile in use.
    pub fn slots(&self) -> std::ops::Range<u32> {
        1..self.stats().profiles_used + 1
    }

    /// Runs the `import` program once; its result, or a negative errno.
    fn import_op(&self, mut args: types::import_args) -> Result<i32, ImportError> {
        run_syscall_prog(&self.skel.progs.import, &mut args).map_err(ImportError::Kernel)?;
        Ok(args.result)
    }

    fn write_slot(&self, slot: u32, raw: &types::profile) -> Result<(), ImportError> {
        // SAFETY: `types::profile` is a plain repr(C) record; viewing it as bytes is sound.
        let bytes = unsafe { plain::as_bytes(raw) };
        self.skel
            .maps
            .profiles
            .update(&slot.to_ne_bytes(), bytes, MapFlags::ANY)
            .map_err(|e| ImportError::Kernel(e.to_string()))
    }

    /// Puts `p` in slot 0, its rows in the staging rows (reserving more when they do not fit).
    fn stage(&self, p: &Profile) -> Result<(), ImportError> {
        let (train, test) = (
            columns::kernel_table(&p.train),
            columns::kernel_table(&p.test),
        );
        let need = (train.len() + test.len()) as u32;
        let (mut first, mut have) = self.staging.get();
        if need > have {
            let r = self.import_op(types::import_args {
                op: types::import_op::IMPORT_RESERVE_ROWS.0,
                count: need,
                ..Default::default()
            })?;
            if r < 0 {
                return Err(ImportError::RowsFull);
            }
            (first, have) = (r as u32, need);
            self.staging.set((first, have));
        }
        let mut raw = types::profile {
            count: p.count,
            train_count: p.train_count,
            last_mod_count: p.last_mod_count,
            sequences: p.sequences,
            anomalies: p.anomalies,
            normal_time: p.normal_time,
            state: p.state & crate::profile::PS_KEPT,
            pending: p.life.pending,
            ..Default::default()
        };
        let mut next = first;
        for (table, index) in [(&train, &mut raw.train_row), (&test, &mut raw.test_row)] {
            for (&col, row) in table {
                self.skel
                    .maps
                    .rows
                    .update(&next.to_ne_bytes(), &row[..], MapFlags::ANY)
                    .map_err(|e| ImportError::Kernel(e.to_string()))?;
                // Row numbers are below `--max-rows`, which is at most 65536.
                index[usize::from(col)] = next as u16;
                next += 1;
            }
        }
        self.write_slot(0, &raw)
    }

    /// Merges `merged` into the live profile in `slot`, all or nothing (see `import` in
    /// `bpf/ebpfh.bpf.c`): its pairs are ORed in, each counter takes the larger value (the counts
    /// that lead to normal restart with `promote`), and the state becomes `merged`'s, provided the
    /// profile's state is still `expect`.
    pub fn merge_profile(
        &self,
        slot: u32,
        merged: &Profile,
        expect: u32,
        promote: bool,
    ) -> Result<(), ImportError> {
        self.stage(merged)?;
        let r = self.import_op(types::import_args {
            op: types::import_op::IMPORT_MERGE.0,
            slot,
            expect,
            flags: if promote {
                types::import_flags::IMPORT_PROMOTE.0
            } else {
                0
            },
            ..Default::default()
        })?;
        match -r {
            0 => Ok(()),
            16 => Err(ImportError::Busy),
            2 => Err(ImportError::NoProfile),
            28 => Err(ImportError::RowsFull),
            e => Err(ImportError::Kernel(
                std::io::Error::from_raw_os_error(e).to_string(),
            )),
        }
    }

    /// Adds `p` as a new profile for its key while the programs run: the slot is filled before
    /// its key is indexed, so no task ever sees it half-written. `Ok(None)` if a task created a
    /// profile for the key meanwhile (merge into that one instead).
    pub fn create_profile(&self, p: &Profile) -> Result<Option<u32>, ImportError> {
        let r = self.import_op(types::import_args {
            op: types::import_op::IMPORT_RESERVE_SLOT.0,
            ..Default::default()
        })?;
        if r < 0 {
            return Err(ImportError::ProfilesFull);
        }
        let slot = r as u32;
        let key = types::profile_key {
            dev: p.key.kdev,
            ino: p.key.ino,
            script: p.key.script,
        };
        let life = &p.life;
        let empty = types::profile {
            key,
            novelty: life.novelty,
            runs: life.runs,
            last_new_time: life.last_new_time,
            budget_time: life.budget_time,
            ..Default::default()
        };
        self.write_slot(slot, &empty)?;
        let done = self.merge_profile(slot, p, 0, false).and_then(|()| {
            // SAFETY: plain C record.
            let key_bytes = unsafe { plain::as_bytes(&key) };
            match self.skel.maps.profile_index.update(
                key_bytes,
                &slot.to_ne_bytes(),
                MapFlags::NO_EXIST,
            ) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(ImportError::Kernel(e.to_string())),
            }
        });
        match done {
            Ok(true) => Ok(Some(slot)),
            other => {
                // Nothing indexes the slot: blank it so that nothing lists or saves it.
                self.write_slot(slot, &types::profile::default())?;
                other.map(|_| None)
            }
        }
    }

    /// Writes saved profiles into the kernel before attaching; returns their slots in order.
    pub fn load_profiles(&mut self, profiles: &[Profile]) -> Result<Vec<u32>, LoadError> {
        let (mut next_slot, mut next_row) = match self.skel.maps.data_data.as_deref() {
            Some(d) => (d.next_profile, d.next_row),
            None => (1, 1),
        };
        let mut slots = Vec::with_capacity(profiles.len());
        for prof in profiles {
            if next_slot >= self.cap.profiles {
                return Err(LoadError::ProfilesFull(self.cap.profiles));
            }
            let mut raw = types::profile {
                key: prof.key.into(),
                count: prof.count,
                train_count: prof.train_count,
                last_mod_count: prof.last_mod_count,
                sequences: prof.sequences,
                anomalies: prof.anomalies,
                normal_time: prof.normal_time,
                novelty: prof.life.novelty,
                runs: prof.life.runs,
                last_new_time: prof.life.last_new_time,
                budget_time: prof.life.budget_time,
                budget: prof.life.budget,
                pending: prof.life.pending,
                repeat_runs: prof.life.repeat_runs,
                // A profile saved mid-promotion has no half-copied test data: PROMOTING is dropped.
                state: prof.state & crate::profile::PS_KEPT,
                ..Default::default()
            };
            for (col, row, test) in prof.kernel_rows() {
                let Some(row) = row else {
                    // The same data as training's row: testing shares it, as after a promotion.
                    raw.test_row[col] = raw.train_row[col];
                    continue;
                };
                let index = if test {
                    &mut raw.test_row
                } else {
                    &mut raw.train_row
                };
                if next_row >= self.cap.rows {
                    return Err(LoadError::RowsFull(self.cap.rows));
                }
                self.skel
                    .maps
                    .rows
                    .update(&next_row.to_ne_bytes(), &row[..], MapFlags::ANY)
                    .map_err(kernel("store a lookahead row"))?;
                // Row numbers are below `--max-rows`, which is at most 65536.
                index[col] = next_row as u16;
                next_row += 1;
            }
            // SAFETY: `types::profile` is a plain repr(C) record; viewing it as bytes is sound.
            let bytes = unsafe { plain::as_bytes(&raw) };
            self.skel
                .maps
                .profiles
                .update(&next_slot.to_ne_bytes(), bytes, MapFlags::ANY)
                .map_err(kernel("store a profile"))?;
            let key = types::profile_key::from(prof.key);
            // SAFETY: as above.
            let key_bytes = unsafe { plain::as_bytes(&key) };
            self.skel
                .maps
                .profile_index
                .update(key_bytes, &next_slot.to_ne_bytes(), MapFlags::NO_EXIST)
                .map_err(kernel("index a profile"))?;
            slots.push(next_slot);
            next_slot += 1;
        }
        if let Some(d) = self.skel.maps.data_data.as_deref_mut() {
            d.next_profile = next_slot;
            d.next_row = next_row;
        }
        Ok(slots)
    }
}

/// Sizes the maps whose capacity the monitor chooses (they must be sized before load).
fn size_maps(maps: &mut skel::OpenEbpfhMaps<'_>, cap: Capacity) -> Result<(), LoadError> {
    maps.profiles
        .set_max_entries(cap.profiles)
        .map_err(kernel("size the profile table"))?;
    maps.profile_index
        .set_max_entries(cap.profiles)
        .map_err(kernel("size the profile index"))?;
    maps.rows
        .set_max_entries(cap.rows)
        .map_err(kernel("size the row pool"))?;
    maps.events
        .set_max_entries(cap.ring_bytes)
        .map_err(kernel("size the ring buffer"))?;
    maps.trace
        .set_max_entries(cap.trace_bytes)
        .map_err(kernel("size the trace buffer"))?;
    Ok(())
}

/// Tells the kernel that files named `interp.name` (plus a version) are such an interpreter.
fn set_interpreter(skel: &EbpfhSkel<'_>, interp: &Interpreter) -> Result<(), LoadError> {
    let mut key = types::interp_name::default();
    for (d, &s) in key.name.iter_mut().zip(interp.name.as_bytes()) {
        *d = s as _;
    }
    let rule = types::interp_rule {
        code: script::letters(interp.rule.code),
        value: script::letters(interp.rule.value),
        attached: script::letters(interp.rule.attached),
        plus: u32::from(interp.rule.plus),
        ..Default::default()
    };
    // SAFETY: plain C records.
    let (k, v) = unsafe { (plain::as_bytes(&key), plain::as_bytes(&rule)) };
    skel.maps
        .interpreters
        .update(k, v, MapFlags::ANY)
        .map_err(kernel("register an interpreter"))
}

/// Runs an `iter/task` program once over every task and returns what it wrote.
fn run_iter(prog: &libbpf_rs::ProgramMut<'_>) -> Result<Vec<u8>, LoadError> {
    let link = prog.attach().map_err(kernel("create the task iterator"))?;
    let mut iter = Iter::new(&link).map_err(kernel("open the task iterator"))?;
    let mut buf = Vec::new();
    iter.read_to_end(&mut buf).map_err(|e| LoadError::Kernel {
        what: "run the task iterator",
        source: e.into(),
    })?;
    Ok(buf)
}

/// Whether this kernel runs BPF LSM programs: loads and attaches only the execve check, in a
/// throwaway object with tiny maps, with libbpf's complaints muted.
fn lsm_works() -> bool {
    fn probe() -> Result<(), LoadError> {
        let mut obj = MaybeUninit::uninit();
        let mut open = EbpfhSkelBuilder::default()
            .open(&mut obj)
            .map_err(kernel("open the BPF object"))?;
        let tiny = Capacity {
            profiles: 16,
            rows: 64,
            ring_bytes: 4096,
            trace_bytes: 4096,
            ..Capacity::DEFAULT
        };
        size_maps(&mut open.maps, tiny)?;
        let p = &mut open.progs;
        for prog in [
            &mut p.sys_enter,
            &mut p.sched_process_exec,
            &mut p.sched_process_fork,
            &mut p.sched_process_exit,
            &mut p.signal_deliver,
            &mut p.adopt_tasks,
            &mut p.dump_tasks,
            &mut p.command,
            &mut p.import,
        ] {
            prog.set_autoload(false);
        }
        let skel = open.load().map_err(kernel("load the execve check"))?;
        let _link = skel
            .progs
            .exec_check
            .attach()
            .map_err(kernel("attach the execve check"))?;
        Ok(())
    }
    let quiet = libbpf_rs::set_print(None);
    let works = probe().is_ok();
    libbpf_rs::set_print(quiet);
    works
}

fn pidfd_open(pid: u32) -> Option<i32> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    (fd >= 0).then_some(fd as i32)
}

/// # Safety
/// `fd` must be an open descriptor owned by the caller and not used afterwards.
unsafe fn libc_close(fd: i32) {
    // SAFETY: guaranteed by the caller.
    unsafe { nix::libc::close(fd) };
}

/// The ebpfh lifecycle's block of a kernel profile.
fn life(p: &types::profile) -> crate::profile::Life {
    crate::profile::Life {
        novelty: p.novelty,
        runs: p.runs,
        last_new_time: p.last_new_time,
        budget_time: p.budget_time,
        budget: p.budget,
        pending: p.pending,
        repeat_runs: p.repeat_runs,
    }
}

fn write_settings(dst: &mut types::settings, s: &Settings, monitor_tgid: u32) {
    dst.normal_wait_ns = crate::settings::wait_ns(s.normal_wait);
    dst.normal_factor = s.normal_factor;
    dst.normal_factor_den = s.normal_factor_den;
    dst.anomaly_limit = s.anomaly_limit;
    dst.tolerize_limit = s.tolerize_limit;
    dst.log_sequences = u32::from(s.log_sequences);
    dst.monitoring = u32::from(s.monitoring);
    dst.monitor_tgid = monitor_tgid;
    dst.delay_factor_ms = s.delay_factor_ms;
    dst.respond_listed = u32::from(s.respond_listed);
    dst.abort_execve = s.abort_execve;
    dst.execve_kill = u32::from(s.execve_kill);
    dst.lifecycle = s.lifecycle.raw();
    dst.max_delay_ms = crate::settings::millis_u32(s.max_delay);
    use types::record_mode as m;
    let (mode, root) = match s.record {
        crate::settings::RecordMode::Off => (m::RECORD_OFF, 0),
        crate::settings::RecordMode::All => (m::RECORD_ALL, 0),
        crate::settings::RecordMode::Tree { recorder } => (m::RECORD_TREE, recorder),
    };
    (dst.record, dst.record_root) = (mode.0, root);
}

fn libbpf_log(level: libbpf_rs::PrintLevel, msg: String) {
    match level {
        libbpf_rs::PrintLevel::Warn => log::warn!(target: "libbpf", "{}", msg.trim_end()),
        libbpf_rs::PrintLevel::Info => log::info!(target: "libbpf", "{}", msg.trim_end()),
        libbpf_rs::PrintLevel::Debug => log::debug!(target: "libbpf", "{}", msg.trim_end()),
    }
}

/// Sends libbpf's own messages (verifier logs on failure) to our logger.
pub fn route_libbpf_log(verbose: bool) {
    let level = if verbose {
        libbpf_rs::PrintLevel::Debug
    } else {
        libbpf_rs::PrintLevel::Warn
    };
    libbpf_rs::set_print(Some((level, libbpf_log)));
}

/// Entries in use of a table of `entries` whose entry 0 is reserved, from its next-free counter.
fn used(next: u32, entries: u32) -> u32 {
    next.saturating_sub(1).min(entries.saturating_sub(1))
}

/// Runs a `SEC("syscall")` program once on `args`, which it reads and writes in place.
fn run_syscall_prog<T: plain::Plain>(
    prog: &libbpf_rs::ProgramMut<'_>,
    args: &mut T,
) -> Result<(), String> {
    // SAFETY: `T` is a plain C record (`Plain`): any byte pattern the kernel writes is valid.
    let ctx = unsafe { plain::as_mut_bytes(args) };
    let input = libbpf_rs::ProgramInput {
        context_in: Some(ctx),
        ..Default::default()
    };
    prog.test_run(input).map(drop).map_err(|e| e.to_string())
}
