/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Types and constants shared by the kernel program and the Rust monitor.
 * Rust reads them from the generated skeleton's `types` module, so this is
 * the one definition of every record that crosses the kernel boundary.
 * Event kinds and stat indices are part of the on-wire contract: add new
 * values at the end, never renumber or reuse one.
 */
#ifndef EBPFH_H
#define EBPFH_H

/* pH's sequence window: the current call and the 8 calls before it. */
#define WINDOW 9
#define DISTANCES (WINDOW - 1)

/*
 * The alphabet. Native syscall numbers below SYM_OTHER are themselves;
 * anything else (x32 bit, bogus numbers) collapses into SYM_OTHER, so no
 * foreign id ever aliases a real call. EMPTY is a real symbol (pH): a fresh
 * window is all EMPTY and pairs with EMPTY are learned and tested.
 */
#define NSYMBOLS 512
#define SYM_OTHER 510
#define SYM_EMPTY 511

/*
 * The kernel's columns: the symbols a native call can be, without the block
 * of numbers the architecture never assigns (x86_64 stops at 335 and resumes
 * at 424, where every architecture's new calls now start; arm64 stops at
 * 294). Rows and row indexes are this wide, not NSYMBOLS, so a row is 400
 * bytes instead of 512 (docs/design.md, "Profile memory"). Numbers
 * [0, NATIVE_LOW_END) are their own column, [NATIVE_HIGH_START,
 * NATIVE_HIGH_END) are shifted down by COL_GAP, and every other number is
 * OTHER, as a foreign id is. The window, the tables and the pool hold
 * columns; events and trace records carry symbols, so nothing outside the
 * kernel sees a column except the rows the monitor loads and dumps.
 */
#define NCOLS 400
#define COL_OTHER (NCOLS - 2)
#define COL_EMPTY (NCOLS - 1)
#define NATIVE_HIGH_START 424
#if defined(__TARGET_ARCH_arm64)
#define NATIVE_LOW_END 295
#define NATIVE_HIGH_END SYM_OTHER
#else
/* A few numbers past 335 and past the newest call (469 in Linux 6.18) for calls to come. */
#define NATIVE_LOW_END 340
#define NATIVE_HIGH_END 482
#endif
#define COL_GAP (NATIVE_HIGH_START - NATIVE_LOW_END)
_Static_assert(NATIVE_HIGH_END - COL_GAP <= COL_OTHER, "the native calls fit the columns");
_Static_assert(NATIVE_HIGH_END <= SYM_OTHER, "every native call has a symbol");
_Static_assert(NCOLS % 8 == 0, "a row is whole 64-bit words");

/* Window slots kept per frame; a power of two so indices wrap with a mask. */
#define RING 16
/* Signal-handler frames per task (frame 0 is the interrupted program). */
#define SIGSTACK 8
/* Locality frame length in calls. */
#define LOCALITY 128

#define COMM_LEN 16
#define PATH_LEN 256

/*
 * Script profiles. An interpreter's argv is scanned in its first ARGV_BYTES
 * bytes; interpreters are known by the name of the executed file with any
 * version suffix removed (python3.12 -> python), at most INTERP_NAME - 1 long.
 */
#define ARGV_BYTES 512
#define INTERP_NAME 16

/*
 * A file without a name (memfd, O_TMPFILE, deleted: i_nlink == 0) is keyed
 * by who ran it and its name, not by an inode that is new every time: dev is
 * ANON_DEV | uid, ino an FNV-1a hash of the dentry name (its first
 * ANON_NAME - 1 bytes). No real device number has bit 63 set.
 */
#define ANON_DEV (1ULL << 63)
#define ANON_NAME 64

/* Profile state bits. pH keeps frozen and normal as independent flags. */
#define PS_FROZEN 1
#define PS_NORMAL 2
/* Set while one task copies training data to testing data. */
#define PS_PROMOTING 4
/*
 * ebpfh lifecycle: a run of this normal profile went above the minor-LFC
 * threshold since the last accept, so its pending pairs wait for the
 * operator (`ebpfh accept`) instead of being accepted by themselves.
 */
#define PS_TAINTED 8

/* Which profile lifecycle the kernel runs (settings.lifecycle). */
enum lifecycle {
	LIFECYCLE_EBPFH = 0, /* run-based convergence, pending pairs, run budget */
	LIFECYCLE_PH = 1,    /* pH's rules, bit for bit */
};

/*
 * The ebpfh lifecycle's constants (docs/lifecycle.md explains the rule).
 * Novelty is an EWMA over ended runs of "this run learned a new pair",
 * fixed point with NOVELTY_ONE = every run; each ended run weighs 1/8.
 */
#define NOVELTY_ONE (1u << 16)
#define NOVELTY_SHIFT 3
/* Freeze below 1/16; a frozen profile thaws only above 1/4 (hysteresis:
 * one novel run in a frozen profile stays below it, two in a row do not). */
#define NOVELTY_FREEZE (NOVELTY_ONE / 16)
#define NOVELTY_THAW (NOVELTY_ONE / 4)
/* A profile must have made this many calls before it may freeze. */
#define FREEZE_MIN_CALLS 1024
/* Runs of a normal, untainted profile that showed its pending pairs again
 * (and nothing new, all below the minor LFC) after which they become
 * testing data by themselves. */
#define ACCEPT_RUNS 8
/* Per-task run flags. */
#define RUN_NEW 1 /* this run taught its profile a new pair */
#define RUN_FORKED 2 /* this run began at a fork, not an exec */

/*
 * Defaults of the tunables (pH's values) and of the capacities. The C
 * initializers in ebpfh.bpf.c use them, and src/abi.rs checks at compile
 * time that the Rust defaults (src/settings.rs, src/bpf.rs) are the same.
 */
enum defaults {
	DEFAULT_NORMAL_WAIT_S = 7 * 24 * 3600, /* one week */
	DEFAULT_NORMAL_FACTOR = 128,
	DEFAULT_NORMAL_FACTOR_DEN = 32,
	DEFAULT_ANOMALY_LIMIT = 30,
	DEFAULT_TOLERIZE_LIMIT = 12,
	DEFAULT_MAX_PROFILES = 4096,
	DEFAULT_MAX_ROWS = 65536,
	/* Row numbers are 16 bits (0 = none), so the pool holds at most this many. */
	MAX_ROWS = 65536,
	DEFAULT_RING_BYTES = 4 << 20,
	DEFAULT_TRACE_BYTES = 64 << 10,
};

/* Tunables; the monitor writes them while the programs run. */
struct settings {
	__u64 normal_wait_ns;
	__u32 normal_factor;
	__u32 normal_factor_den;
	__u32 anomaly_limit;
	__u32 tolerize_limit;
	__u32 monitor_tgid;
	__u32 monitoring;
	__u32 log_sequences;
	__u32 record;        /* enum record_mode */
	__u32 record_root;   /* with RECORD_TREE: the recorder; its children's execs start the tree */
	__u32 delay_factor_ms; /* pH's delay response: 0 = off */
	__u32 max_delay_ms;
	__u32 respond_listed;  /* responses only for executables marked POLICY_TARGET */
	__u32 abort_execve;    /* deny execve when LFC exceeds this (0 = off; needs BPF LSM) */
	__u32 execve_kill;     /* kill the task at such an execve instead of only denying it */
	__u32 lifecycle;       /* enum lifecycle */
};

/* Per-executable response policy (the `policy` map). */
enum response_policy {
	POLICY_ALLOW = 1,  /* never respond */
	POLICY_TARGET = 2, /* respond (with respond_listed, only these) */
};

/*
 * Identity of a profile: the executable as the kernel sees it (raw s_dev,
 * i_ino) and, for an interpreter running a script file, a hash of the
 * script's path (0 = not a script profile).
 */
struct profile_key {
	__u64 dev;
	__u64 ino;
	__u64 script;
};

/*
 * How one interpreter family reads its command line, for finding the script
 * among the arguments. Option letters are bits: a-z 0..25, A-Z 26..51,
 * 0-9 52..61 (letter_bit in ebpfh.bpf.c).
 */
struct interp_rule {
	__u64 code;     /* the program is on the command line or stdin: no script */
	__u64 value;    /* takes a value: the rest of the bundle, else the next argument */
	__u64 attached; /* takes the rest of the bundle only (perl -i.bak) */
	__u32 plus;     /* '+' starts options too (shells: +o NAME) */
	__u32 _pad;
};

struct interp_name {
	char name[INTERP_NAME];
};

/*
 * One profile, stored in an ARRAY slot so the hot path never hashes.
 * Lookahead data lives in NCOLS-byte rows (one byte per earlier column, bit
 * i-1 = distance i) in the shared `rows` pool; train_row[c] / test_row[c]
 * name the row for current column c, 0 meaning "no row yet" (all clear).
 * Training and testing may name the same row while their data for c is the
 * same (docs/design.md, "Profile memory"): learning gives training a copy
 * first, so a shared row is never written.
 */
struct profile {
	struct profile_key key;
	__u64 count;
	__u64 train_count;
	__u64 last_mod_count;
	__u64 sequences;
	__u64 anomalies;
	__u64 normal_time; /* TAI ns after which a frozen profile turns normal */
	__u32 state;
	/* ebpfh lifecycle (all zero and unused under pH's). */
	__u32 novelty;       /* EWMA of novel runs, NOVELTY_ONE = every run */
	__u64 runs;          /* runs ended (task exit or exec) */
	__u64 last_new_time; /* TAI ns of the latest new pair (or creation) */
	__u64 budget_time;   /* start of the current anomaly-budget window */
	__u32 budget;        /* anomalous runs charged in that window */
	__u32 pending;       /* pair sets learned while normal, not yet tested */
	__u32 repeat_runs;   /* runs that showed only pending pairs again, since the last accept */
	__u32 _pad;
	__u16 train_row[NCOLS];
	__u16 test_row[NCOLS];
};

struct row {
	__u64 w[NCOLS / 8];
};

/* One sequence frame: a ring of the latest columns, newest at pos. */
struct frame {
	__u16 win[RING];
	__u32 pos;
	__u32 _pad;
};

struct task_state {
	__u32 profile; /* slot in `profiles`; 0 = untraced */
	__u32 depth;   /* index of the current frame */
	__u32 overflow; /* handler entries beyond SIGSTACK, still to pop */
	__u32 lf_pos;
	__u32 lfc;
	__u32 lfc_max;
	__u32 tolerized; /* LFC is above tolerize_limit; event already sent */
	__u32 recorded;  /* part of the process tree being recorded */
	__u32 run_flags; /* RUN_*, since this run began (exec or fork) */
	__u32 run_lfc;   /* highest LFC of this run (lf_reset leaves it) */
	__u64 count;
	__u64 lf[LOCALITY / 64];
	struct frame frames[SIGSTACK];
};

enum event_kind {
	EV_PROFILE_CREATED = 1,
	EV_ANOMALY = 2,
	EV_NORMAL_STARTED = 3,
	EV_NORMAL_STOPPED = 4,
	EV_TOLERIZE_LIMIT = 5,
	EV_NEW_SEQUENCE = 6,
	EV_DELAY = 7,
	EV_EXECVE_DENIED = 8,
	EV_PENDING_ACCEPTED = 9, /* ev_state; reason = pair sets accepted */
	EV_KIND_MAX = 10,
};

enum stop_reason {
	STOP_ANOMALY_LIMIT = 1,
	STOP_COMMAND = 2,
};

enum stat_index {
	STAT_OTHER_IDS = 0,      /* calls whose id fell outside the table */
	STAT_ROWS_FULL = 1,      /* row pool exhausted: pairs not learned */
	STAT_PROFILES_FULL = 2,  /* profile table full: exec left untraced */
	STAT_TASKS_FAILED = 3,   /* task storage could not be created */
	STAT_SIGSTACK_OVERFLOW = 4,
	STAT_INDEX_RACE = 5,     /* two tasks created one profile at once */
	STAT_QUOTA_REFUSED = 6,  /* a non-root uid had used its quota: exec left untraced */
	STAT_MAX = 8,
};

struct ev_header {
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 profile; /* slot */
	__u64 time;    /* CLOCK_TAI ns */
	char comm[COMM_LEN];
	__u64 cgroup;  /* the task's cgroup v2 id: its directory's inode on the cgroup2 mount */
};

struct ev_profile_created {
	struct ev_header h;
	struct profile_key key;
	/* What exec was asked to run, as given (may be relative); empty for
	 * processes found at start-up. */
	char filename[PATH_LEN];
	/* A script profile's script, as given to exec or to the interpreter. */
	char script[PATH_LEN];
	/* The executable's absolute path, walked up its dentries and mounts
	 * (in the task's mount namespace); empty if deeper or longer than the
	 * walk goes. */
	char path[PATH_LEN];
	/* The working directory, likewise, when `script` is relative. */
	char cwd[PATH_LEN];
};

struct ev_anomaly {
	struct ev_header h;
	__u16 window[WINDOW]; /* oldest first; window[WINDOW-1] is the call */
	__u16 misses;
	__u32 lfc;
	/* Of the missing pairs, those the training data lacked too (learned by
	 * this call); the others were pending, already shown by earlier calls. */
	__u16 new_pairs;
	/* The testing data has no pair at all with this call: the profile never
	 * made it (while it trained). */
	__u16 unknown;
	__u64 profile_anomalies;
	__u64 task_count;
};

/* The task was stopped (SIGSTOP) and must be resumed after delay_ms. */
struct ev_delay {
	struct ev_header h;
	__u32 delay_ms;
	__u32 lfc;
};

/* An execve refused (or answered with SIGKILL) because the task's LFC was too high. */
struct ev_execve_denied {
	struct ev_header h;
	__u32 lfc;
	__u32 killed;
	char filename[PATH_LEN];
};

/* normal_started / normal_stopped / tolerize_limit / new_sequence. */
struct ev_state {
	struct ev_header h;
	__u64 count;
	__u64 train_count;
	__u64 last_mod_count;
	__u64 sequences;
	__u64 anomalies;
	__u32 reason;
	__u32 lfc;
	__u16 window[WINDOW]; /* new_sequence only; oldest first */
	__u16 _pad[3];
};

/* What the `trace` ring buffer receives: nothing, every traced task, or one process tree. */
enum record_mode {
	RECORD_OFF = 0,
	RECORD_ALL = 1,
	RECORD_TREE = 2,
};

/*
 * Trace records: exactly the inputs of the per-call algorithm, in the order
 * the kernel saw them per task, so a recording replays through the model.
 * `time` is the TAI clock the algorithm itself used for that step.
 */
enum trace_kind {
	TR_CALL = 1,   /* nr = the symbol (ids without a column already OTHER) */
	TR_EXIT = 2,
	TR_SIGNAL = 3, /* a handler frame was pushed */
	TR_EXEC = 4,   /* task_rec: new image, profile `slot`, `key` */
	TR_FORK = 5,   /* task_rec: `tid` is the child, `other` the parent tid */
	TR_ADOPT = 6,  /* task_rec: found running at start-up (like exec) */
	TR_SIGRETURN = 7, /* a handler frame was popped by a call not recorded as rt_sigreturn */
};

struct trace_call {
	__u64 time;
	__u32 tid;
	__u16 kind;
	__u16 nr;
};

struct trace_task {
	__u64 time;
	__u32 tid;
	__u16 kind;
	__u16 _pad;
	__u32 tgid;
	__u32 other; /* slot (exec/adopt) or parent tid (fork) */
	struct profile_key key;
};

/* Operator commands on one profile, run through the `command` program. */
enum command_op {
	CMD_NORMALIZE = 1, /* start normal monitoring now (copy training data) */
	CMD_SENSITIZE = 2, /* forget the training data; normal status unchanged */
	CMD_TOLERIZE = 3,  /* stop normal monitoring; keep the training data */
	CMD_RESET = 4,     /* forget everything: tables, counters, state */
	CMD_FREEZE = 5,    /* freeze now; normal after normal_wait */
	CMD_ACCEPT = 6,    /* make a normal profile's pending pairs testing data */
};

struct command_args {
	__u32 slot;
	__u32 op;
	__s32 result; /* 0, or a negative errno */
	__u32 _pad;
};

/* One traced task, as the `dump_tasks` iterator writes it. */
struct task_record {
	__u32 tgid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 profile;
	__u32 lfc;
	__u32 lfc_max;
	__u32 depth;
	__u64 count;
	char comm[COMM_LEN];
	__u64 cgroup;  /* as in ev_header */
};

/* The #define constants above, as an enum so they reach the Rust skeleton. */
enum abi_constants {
	ABI_WINDOW = WINDOW,
	ABI_DISTANCES = DISTANCES,
	ABI_NSYMBOLS = NSYMBOLS,
	ABI_SYM_OTHER = SYM_OTHER,
	ABI_SYM_EMPTY = SYM_EMPTY,
	ABI_NCOLS = NCOLS,
	ABI_NATIVE_LOW_END = NATIVE_LOW_END,
	ABI_NATIVE_HIGH_START = NATIVE_HIGH_START,
	ABI_NATIVE_HIGH_END = NATIVE_HIGH_END,
	ABI_RING = RING,
	ABI_SIGSTACK = SIGSTACK,
	ABI_LOCALITY = LOCALITY,
	ABI_COMM_LEN = COMM_LEN,
	ABI_PATH_LEN = PATH_LEN,
	ABI_PS_FROZEN = PS_FROZEN,
	ABI_PS_NORMAL = PS_NORMAL,
	ABI_PS_PROMOTING = PS_PROMOTING,
	ABI_PS_TAINTED = PS_TAINTED,
	ABI_NOVELTY_ONE = NOVELTY_ONE,
	ABI_NOVELTY_SHIFT = NOVELTY_SHIFT,
	ABI_NOVELTY_FREEZE = NOVELTY_FREEZE,
	ABI_NOVELTY_THAW = NOVELTY_THAW,
	ABI_FREEZE_MIN_CALLS = FREEZE_MIN_CALLS,
	ABI_ACCEPT_RUNS = ACCEPT_RUNS,
};

/*
 * Fleet imports (`ebpfh profile import`), run by the monitor through the
 * `import` program like the operator commands. The profile to merge in is
 * staged in slot 0, which no executable ever gets: its rows in rows the
 * monitor reserved for staging.
 */
enum import_op {
	IMPORT_RESERVE_ROWS = 1, /* `count` rows for staging; result = the first */
	IMPORT_RESERVE_SLOT = 2, /* a profile slot, not yet indexed; result = it */
	IMPORT_MERGE = 3,        /* merge slot 0 into `slot`, if its state is `expect` */
};

/* IMPORT_MERGE flags. */
enum import_flags {
	IMPORT_PROMOTE = 1, /* restart the counts that lead to normal, as promote does */
};

struct import_args {
	__u32 op;
	__u32 slot;
	__u32 count;
	__u32 expect; /* state bits the monitor read, without PS_PROMOTING */
	__u32 flags;
	__s32 result; /* >= 0, or a negative errno */
};

/*
 * One member of every enum above, so that each reaches BTF and with it the
 * Rust skeleton (`types::event_kind::EV_ANOMALY` and so on), where src/abi.rs
 * checks the Rust side's numbers against them; ebpfh.bpf.c defines one such
 * global. A new enum gets a member here.
 */
struct abi_enums {
	enum defaults defaults;
	enum abi_constants constants;
	enum response_policy policy;
	enum event_kind event_kind;
	enum stop_reason stop_reason;
	enum stat_index stat_index;
	enum record_mode record_mode;
	enum trace_kind trace_kind;
	enum command_op command_op;
	enum lifecycle lifecycle;
	enum import_op import_op;
	enum import_flags import_flags;
};

#endif /* EBPFH_H */
