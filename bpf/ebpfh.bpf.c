// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * ebpfh kernel half: pH (Somayaji's Process Homeostasis) on system calls.
 *
 * Every traced task keeps a window of its last 9 calls; every executable
 * keeps a profile of lookahead pairs. A call whose pairs the profile has
 * never seen is learned (training) or reported (normal). The algorithm and
 * its order of steps are docs/algorithm.md (and docs/lifecycle.md); comments
 * here say why the code is shaped as it is.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "ebpfh.h"

#if defined(__TARGET_ARCH_x86)
#define NR_rt_sigreturn 15
/* 32-bit calls from 64-bit kernels: arch/x86/entry/syscalls/syscall_{32,64}.tbl */
#define NR_ia32_sigreturn 119
#define NR_ia32_rt_sigreturn 173
#define NR_x32_rt_sigreturn (0x40000000 | 513)
#define TS_COMPAT 0x0002 /* arch/x86/include/asm/thread_info.h */
#elif defined(__TARGET_ARCH_arm64)
#define NR_rt_sigreturn 139
#else
#error "ebpfh knows rt_sigreturn only for x86 and arm64"
#endif

#define PF_KTHREAD 0x00200000
#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif
#define ENOENT 2
#define EAGAIN 11
#define EBUSY 16
#define EINVAL 22
#define ENODATA 61
#define ENOSPC 28
#define SIGSTOP 19
#define SIGKILL 9
#define EPERM 1

/*
 * Cut-down builds for the benchmark's breakdown only (bench/breakdown.py): built with
 * -DEBPFH_BENCH_STAGE=N, sys_enter stops after its step N, so the bench can tell what each step
 * costs. The monitor's own object is built without it, and then these are no-ops.
 */
#ifdef EBPFH_BENCH_STAGE
#define BENCH_STOP(n, ...)                            \
	do {                                          \
		if (EBPFH_BENCH_STAGE == (n))         \
			return __VA_ARGS__;           \
	} while (0)
/* A value a cut-down build computes but no longer uses must still be computed. */
#define BENCH_KEEP(v) barrier_var(v)
#else
#define BENCH_STOP(n, ...) do { } while (0)
#define BENCH_KEEP(v) do { } while (0)
#endif

/* What Rust must know of the definitions above (checked in src/abi.rs). */
enum bpf_constants {
	K_ENOENT = ENOENT,   /* command: no such profile */
	K_EBUSY = EBUSY,     /* command: the profile is being promoted */
	K_ENODATA = ENODATA, /* command: normalize without training data; accept with nothing pending */
	K_EAGAIN = EAGAIN,   /* command: accept on a profile that is not normal */
	K_NR_RT_SIGRETURN = NR_rt_sigreturn,
};
enum bpf_constants _bpf_constants = 0;
#define SIG_DFL_HANDLER 0
#define SIG_IGN_HANDLER 1
/* Four EMPTY columns packed in one word, to wipe a frame's ring fast. */
#define EMPTY4 (((__u64)COL_EMPTY << 48) | ((__u64)COL_EMPTY << 32) | \
		((__u64)COL_EMPTY << 16) | (__u64)COL_EMPTY)

/* ---- columns (bpf/ebpfh.h) ------------------------------------------- */

/* A native call's column: one compare for the calls of 0..NATIVE_LOW_END. */
static __always_inline __u32 column(long id)
{
	unsigned long n = id;

	if (n < NATIVE_LOW_END)
		return n;
	if (n - NATIVE_HIGH_START < NATIVE_HIGH_END - NATIVE_HIGH_START)
		return n - COL_GAP;
	return COL_OTHER;
}

/* The symbol of column c, for what leaves the kernel (events, trace records). */
static __always_inline __u16 col_symbol(__u32 c)
{
	if (c < NATIVE_LOW_END)
		return c;
	if (c == COL_EMPTY)
		return SYM_EMPTY;
	/* OTHER, and any column no call maps to (arm64 leaves some). */
	if (c >= NATIVE_HIGH_END - COL_GAP)
		return SYM_OTHER;
	return c + COL_GAP;
}

/*
 * x as an index the verifier can prove below n: x, or `other` if it is not
 * below n (never: the kernel stores no out-of-range column). In asm, for
 * two reasons. The in-range path falls through, so that the verifier walks
 * it first and the clamped path then meets a state that covers it and is
 * pruned; laid out as clang lays out the C (clamp first), every check
 * doubled the walk of all that follows. And the AND gives the value an
 * identity of its own, so that the compare narrows it only, not a copy of
 * the unchecked value the compiler may keep on the stack and read again.
 */
#define BOUNDED(x, n, other) ({						\
	__u64 __x = (x);						\
	asm volatile("%[v] &= 0xffff\n\t"				\
		     "if %[v] >= %[lim] goto +1\n\t"			\
		     "goto +1\n\t"					\
		     "%[v] = %[alt]"					\
		     : [v] "+r"(__x)					\
		     : [lim] "i"(n), [alt] "i"(other));			\
	(__u32)__x;							\
})

/* Column c, as an index into a row or a table. */
static __always_inline __u32 col_index(__u32 c)
{
	return BOUNDED(c, NCOLS, COL_OTHER);
}

/* Capacities, fixed by the monitor before load (they size the maps). */
const volatile __u32 max_profiles = DEFAULT_MAX_PROFILES;
const volatile __u32 max_rows = DEFAULT_MAX_ROWS;
/* Give an interpreter running a script file a profile of its own (--script-profiles). */
const volatile __u32 script_profiles = 1;
/*
 * Profiles one non-root uid may create (0 = no limit), and slots at the end
 * of the table only root may fill: an unprivileged user cannot use up the
 * table and leave root's programs unwatched (--uid-quota, --root-reserve).
 */
const volatile __u32 uid_quota = 0;
const volatile __u32 root_reserve = 0;

/* The settings map: one record the monitor rewrites at run time. */
struct settings settings SEC(".data.settings") = {
	.normal_wait_ns = DEFAULT_NORMAL_WAIT_S * 1000000000ULL,
	.normal_factor = DEFAULT_NORMAL_FACTOR,
	.normal_factor_den = DEFAULT_NORMAL_FACTOR_DEN,
	.anomaly_limit = DEFAULT_ANOMALY_LIMIT,
	.tolerize_limit = DEFAULT_TOLERIZE_LIMIT,
	.monitoring = 1,
	.lifecycle = LIFECYCLE_EBPFH,
};

/*
 * CLOCK_TAI in ns as last published by the monitor (every <= 200 ms). The
 * per-call clock is this load: reading a clock source per call cost ~100 ns
 * here, and tracing programs may not use the coarse-clock helper. pH too
 * compared against a coarse wall clock. The programs live exactly as long as
 * the monitor (their links are its file descriptors), so it is always fed.
 */
__u64 clock_tai_ns SEC(".data.clock") = 0;

/* Allocation cursors (slot 0 / row 0 mean "none") and loss counters. */
__u32 next_profile = 1;
__u32 next_row = 1;
__u64 stats[STAT_MAX];
__u64 lost[EV_KIND_MAX];
__u64 trace_lost;

/* Make the event records reach BTF, hence the Rust skeleton. */
struct ev_profile_created _ev_profile_created = {};
struct ev_anomaly _ev_anomaly = {};
struct ev_state _ev_state = {};
struct ev_delay _ev_delay = {};
struct ev_execve_denied _ev_execve_denied = {};
struct task_record _task_record = {};
struct trace_call _trace_call = {};
struct trace_task _trace_task = {};
struct command_args _command_args = {};
struct abi_enums _abi_enums = {};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DEFAULT_MAX_PROFILES);
	__type(key, __u32);
	__type(value, struct profile);
} profiles SEC(".maps");

/* Only consulted at exec and start-up, never per call. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_PROFILES);
	__type(key, struct profile_key);
	__type(value, __u32);
} profile_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DEFAULT_MAX_ROWS);
	__type(key, __u32);
	__type(value, struct row);
} rows SEC(".maps");

/* Per-executable response policy (enum response_policy): --allow, --respond-only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct profile_key);
	__type(value, __u8);
} policy SEC(".maps");

/* Interpreter families by file name (see interpreter_rule); the monitor fills it at start. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, struct interp_name);
	__type(value, struct interp_rule);
} interpreters SEC(".maps");

/* dpath(): paths up to DPATH_END bytes, names up to NAME_BOUND - 1, DPATH_DEPTH steps. */
#define DPATH_END 511
#define NAME_BOUND 256
#define DPATH_DEPTH 64

/* Profiles created per non-root uid (see uid_quota); the monitor seeds it with the loaded ones. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} uid_profiles SEC(".maps");

/* Exec-time string work: too big for the BPF stack. Exec never nests on a CPU. */
struct exec_scratch {
	char argv[ARGV_BYTES];
	char script[PATH_LEN];
	char name[2 * INTERP_NAME];
	char anon[ANON_NAME];
	/* dpath(): a path is built backwards from DPATH_END. */
	char dpath[DPATH_END + 1 + NAME_BOUND];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_scratch);
} scratch SEC(".maps");

/* Tied to the task struct, so a recycled pid never inherits state
 * (docs/algorithm.md, "Stale state for a recycled pid"). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFAULT_RING_BYTES);
} events SEC(".maps");

/* Only written while recording; the monitor sizes it up for `record`. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFAULT_TRACE_BYTES);
} trace SEC(".maps");

static __always_inline __u64 now_tai(void)
{
	return clock_tai_ns;
}

static __always_inline void count_stat(__u32 i)
{
	if (i < STAT_MAX)
		__sync_fetch_and_add(&stats[i], 1);
}

/* ---- recording --------------------------------------------------------- */

static __always_inline int recording(const struct task_state *ts)
{
	return settings.record == RECORD_ALL ||
	       (settings.record == RECORD_TREE && ts->recorded);
}

static __always_inline void trace_call(__u32 tid, __u16 kind, __u16 nr, __u64 now)
{
	struct trace_call *r = bpf_ringbuf_reserve(&trace, sizeof(*r), 0);

	if (!r) {
		__sync_fetch_and_add(&trace_lost, 1);
		return;
	}
	r->time = now;
	r->tid = tid;
	r->kind = kind;
	r->nr = nr;
	bpf_ringbuf_submit(r, 0);
}

static __always_inline void trace_task(struct task_struct *task, __u16 kind,
				       __u32 other, const struct profile *p, __u64 now)
{
	struct trace_task *r = bpf_ringbuf_reserve(&trace, sizeof(*r), 0);

	if (!r) {
		__sync_fetch_and_add(&trace_lost, 1);
		return;
	}
	r->time = now;
	r->tid = BPF_CORE_READ(task, pid);
	r->kind = kind;
	r->_pad = 0;
	r->tgid = BPF_CORE_READ(task, tgid);
	r->other = other;
	if (p)
		r->key = p->key;
	else
		__builtin_memset(&r->key, 0, sizeof(r->key));
	bpf_ringbuf_submit(r, 0);
}

/* ---- events ----------------------------------------------------------- */

static __always_inline void *event_reserve(__u32 kind, __u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e && kind < EV_KIND_MAX)
		__sync_fetch_and_add(&lost[kind], 1);
	return e;
}

/*
 * The task's cgroup v2 id, read from the task itself rather than with
 * bpf_get_current_cgroup_id(): some events are about another task than the
 * current one (the adoption sweep runs in the monitor). The kernfs id is the
 * cgroup directory's inode number on the cgroup2 mount.
 */
static __always_inline __u64 task_cgroup(struct task_struct *task)
{
	return BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

static __always_inline void event_header(struct ev_header *h, __u32 kind,
					 struct task_struct *task, __u32 slot)
{
	h->kind = kind;
	h->tgid = BPF_CORE_READ(task, tgid);
	h->tid = BPF_CORE_READ(task, pid);
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = BPF_CORE_READ(task, cred, uid.val);
	h->profile = slot;
	h->time = bpf_ktime_get_tai_ns();
	BPF_CORE_READ_STR_INTO(&h->comm, task, comm);
	h->cgroup = task_cgroup(task);
}

/* Copy the current frame's window, oldest first, as symbols. */
static __always_inline void window_out(__u16 *out, const struct frame *f)
{
	__u32 pos = f->pos;

#pragma unroll
	for (int i = 0; i < WINDOW; i++)
		out[i] = col_symbol(f->win[(pos - (WINDOW - 1) + i) & (RING - 1)]);
}

static __always_inline void emit_state(__u32 kind, struct task_state *ts,
				       struct profile *p, __u32 slot,
				       __u32 reason, const struct frame *f)
{
	struct ev_state *e = event_reserve(kind, sizeof(*e));

	if (!e)
		return;
	event_header(&e->h, kind, bpf_get_current_task_btf(), slot);
	e->count = p->count;
	e->train_count = p->train_count;
	e->last_mod_count = p->last_mod_count;
	e->sequences = p->sequences;
	e->anomalies = p->anomalies;
	e->reason = reason;
	e->lfc = ts ? ts->lfc : 0;
	if (f)
		window_out(e->window, f);
	else
		__builtin_memset(e->window, 0, sizeof(e->window));
	bpf_ringbuf_submit(e, 0);
}

/* ---- rows ------------------------------------------------------------- */

static __always_inline struct row *row_get(__u32 r)
{
	return r ? bpf_map_lookup_elem(&rows, &r) : NULL;
}

/*
 * Whether a row holds no pair at all: a symbol the profile never made. A
 * reset zeroes rows in place, so a row may exist and still be empty. Only
 * for anomalous calls whose every distance missed.
 */
static __always_inline int row_empty(const struct row *row)
{
	if (!row)
		return 1;
	for (int w = 0; w < NCOLS / 8; w++)
		if (row->w[w])
			return 0;
	return 1;
}

/*
 * Sets tab[c] from `expect` to r unless it changed meanwhile; returns what
 * tab[c] then names. BPF atomics are 32 or 64 bits wide, so the CAS runs on
 * the aligned word holding tab[c] and its neighbour (retried if only the
 * neighbour changed, which happens only when that symbol gets a row).
 */
static __noinline __u32 row_cas(__u16 *tab, __u32 c, __u32 expect, __u32 r)
{
	__u32 *w = (__u32 *)tab + BOUNDED(c >> 1, NCOLS / 2, 0);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__u32 shift = (c & 1) * 16;
#else
	__u32 shift = (~c & 1) * 16;
#endif
	__u32 old = *w, seen, cur;

	for (int i = 0; i < 4; i++) {
		cur = (old >> shift) & 0xffff;
		if (cur != expect)
			return cur;
		seen = __sync_val_compare_and_swap(w, old, (old & ~(0xffffu << shift)) | (r << shift));
		if (seen == old)
			return r;
		old = seen;
	}
	return (old >> shift) & 0xffff;
}

/* A row from the pool's bump allocator (rows are never freed; a reset zeroes them in place). */
static __always_inline __u32 row_new(void)
{
	__u32 r = __sync_fetch_and_add(&next_row, 1);

	if (r >= max_rows) {
		count_stat(STAT_ROWS_FULL);
		return 0;
	}
	return r;
}

/*
 * Give symbol c a row in one of the profile's tables. If two tasks race,
 * the loser's row leaks; the CAS keeps the table consistent.
 */
static __always_inline struct row *row_alloc(__u16 *tab, __u32 c)
{
	__u32 r = row_new();

	if (!r)
		return NULL;
	return row_get(row_cas(tab, c, 0, r));
}

/*
 * The training row for c to learn into (`row` is its current one): a new
 * row if it has none, a copy of its own if it shares the row with testing
 * (after a promotion), so testing never learns with it. Only on a miss.
 */
static __always_inline struct row *row_for_learning(struct profile *p, __u32 c, struct row *row)
{
	__u32 shared = p->train_row[col_index(c)], r;
	struct row *copy;

	if (!row)
		return row_alloc(p->train_row, c);
	if (shared != p->test_row[col_index(c)])
		return row;
	r = row_new();
	copy = row_get(r);
	if (!copy)
		return NULL;
	__builtin_memcpy(copy, row, sizeof(*copy));
	return row_get(row_cas(p->train_row, c, shared, r));
}

static __always_inline __u8 row_byte(const struct row *row, __u64 p)
{
	return ((const __u8 *)row->w)[p];
}

/*
 * Bitmask of distances (bit i-1 = distance i) whose pair is absent from
 * row. prev[i-1] is the column i calls back, bounded already (on_syscall).
 * A missing row misses all.
 */
static __always_inline __u32 row_misses(const struct row *row, const __u64 *prev)
{
	__u32 miss = 0;

	if (!row)
		return (1u << DISTANCES) - 1;
#pragma unroll
	for (int i = 0; i < DISTANCES; i++)
		if (!(row_byte(row, prev[i]) & (1u << i)))
			miss |= 1u << i;
	return miss;
}

/* Set the missing bits with atomic ORs on whole words (docs/algorithm.md, "Lost flag bits"). */
static __always_inline void row_learn(struct row *row, const __u64 *prev, __u32 miss)
{
#pragma unroll
	for (int i = 0; i < DISTANCES; i++) {
		/* Its word, bounded itself: the verifier would not narrow p & ~7. */
		__u32 p = prev[i], w = BOUNDED(p >> 3, NCOLS / 8, 0);

		if (miss & (1u << i))
			__sync_fetch_and_or(&row->w[w],
					    1ULL << (((p & 7) << 3) + i));
	}
}

/* ---- table-wide operations (bpf_loop over the NCOLS columns) ---------- */

struct table_op {
	__u32 slot;
	__u32 op;
	__u32 failed; /* OP_UNSHARE_FOR_IMPORT: the pool had no row for a copy */
};

enum {
	OP_COPY_TO_TEST,
	OP_COPY_TO_TRAIN,
	OP_MERGE_TO_TEST,
	OP_ZERO_TRAIN,
	OP_ZERO_BOTH,
	OP_UNSHARE_FOR_IMPORT, /* training's own copy of rows the staged profile (slot 0) writes to */
};

/*
 * Make table dst's data for c a copy of table src's (absent = all clear). A
 * symbol dst has no row for shares src's row; rows both tables own are
 * copied, so that no row is ever orphaned (the pool never frees).
 */
static __always_inline void row_copy(__u16 *dst, const __u16 *src, __u32 c)
{
	__u32 s = src[col_index(c)], d = dst[col_index(c)];
	struct row *from, *to;

	if (s == d)
		return;
	if (!d) {
		dst[col_index(c)] = s;
		return;
	}
	to = row_get(d);
	if (!to)
		return;
	from = row_get(s);
	if (from)
		__builtin_memcpy(to, from, sizeof(*to));
	else
		__builtin_memset(to, 0, sizeof(*to));
}

static long table_op_cb(__u64 i, void *ctx)
{
	struct table_op *t = ctx;
	__u32 c = col_index(i), tr, te;
	struct profile *p = bpf_map_lookup_elem(&profiles, &t->slot);
	struct row *src, *dst;

	if (!p)
		return 1;
	if (t->op == OP_COPY_TO_TEST) {
		row_copy(p->test_row, p->train_row, c);
		return 0;
	}
	if (t->op == OP_COPY_TO_TRAIN) {
		row_copy(p->train_row, p->test_row, c);
		return 0;
	}
	tr = p->train_row[c];
	te = p->test_row[c];
	if (t->op == OP_UNSHARE_FOR_IMPORT) {
		__u32 zero = 0, r;
		struct profile *s = bpf_map_lookup_elem(&profiles, &zero);

		if (!s || !tr || tr != te || (!s->train_row[c] && !s->test_row[c]))
			return 0;
		src = row_get(tr);
		r = row_new();
		dst = row_get(r);
		if (!src || !dst) {
			t->failed = 1;
			return 1;
		}
		__builtin_memcpy(dst, src, sizeof(*dst));
		row_cas(p->train_row, c, tr, r);
		return 0;
	}
	if (t->op == OP_MERGE_TO_TEST) {
		/* OR, not copy: accepting never loses a testing pair. */
		src = row_get(tr);
		if (!src || tr == te)
			return 0;
		if (!te) {
			p->test_row[c] = tr; /* nothing to OR into: share */
			return 0;
		}
		dst = row_get(te);
		if (!dst)
			return 0;
		for (int w = 0; w < NCOLS / 8; w++)
			dst->w[w] |= src->w[w];
		return 0;
	}
	if (t->op == OP_ZERO_TRAIN && tr && tr == te) {
		/* The shared row is testing's: training lets go of it. */
		p->train_row[c] = 0;
		return 0;
	}
	src = row_get(tr);
	if (src)
		__builtin_memset(src, 0, sizeof(*src));
	if (t->op == OP_ZERO_BOTH && te != tr) {
		dst = row_get(te);
		if (dst)
			__builtin_memset(dst, 0, sizeof(*dst));
	}
	return 0;
}

/* Returns 0, or -ENOSPC if OP_UNSHARE_FOR_IMPORT found the pool full. */
static __always_inline int table_op(__u32 slot, __u32 op)
{
	struct table_op t = { .slot = slot, .op = op };

	bpf_loop(NCOLS, table_op_cb, &t, 0);
	return t.failed ? -ENOSPC : 0;
}

/* ---- locality frame (§8) ---------------------------------------------- */

static __always_inline void lf_reset(struct task_state *ts)
{
	ts->lf[0] = 0;
	ts->lf[1] = 0;
	ts->lfc = 0;
	ts->lfc_max = 0;
	ts->lf_pos = LOCALITY - 1; /* next write lands on cell 0, as in pH */
	ts->tolerized = 0;
}

static __always_inline void lf_feed(struct task_state *ts, __u32 anomalous)
{
	__u32 pos = (ts->lf_pos + 1) & (LOCALITY - 1);
	__u64 bit = 1ULL << (pos & 63);
	__u64 *w = &ts->lf[pos >> 6];

	ts->lf_pos = pos;
	if (anomalous) {
		if (!(*w & bit)) {
			*w |= bit;
			ts->lfc++;
			if (ts->lfc > ts->lfc_max)
				ts->lfc_max = ts->lfc;
		}
	} else if (*w & bit) {
		*w &= ~bit;
		ts->lfc--;
	}
}

/* ---- task state ------------------------------------------------------- */

static __always_inline void frame_empty(struct frame *f)
{
	__u64 *w = (__u64 *)f->win;

	w[0] = EMPTY4;
	w[1] = EMPTY4;
	w[2] = EMPTY4;
	w[3] = EMPTY4;
	f->pos = 0;
}

/* A new image, or a task found at start-up: one empty frame, fresh LF. */
static __always_inline void task_fresh(struct task_state *ts, __u32 slot)
{
	ts->profile = slot;
	ts->depth = 0;
	ts->overflow = 0;
	ts->count = 0;
	ts->run_flags = 0;
	ts->run_lfc = 0;
	frame_empty(&ts->frames[0]);
	lf_reset(ts);
}

/* A task starts running `slot`'s image (exec, or found at start-up). */
static __always_inline struct task_state *task_start(struct task_struct *task, __u32 slot)
{
	struct task_state *ts;

	ts = bpf_task_storage_get(&tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ts) {
		count_stat(STAT_TASKS_FAILED);
		return NULL;
	}
	task_fresh(ts, slot);
	return ts;
}

/* ---- script profiles (exec time only) -------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static __always_inline struct exec_scratch *scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline __u64 letter_bit(__u8 c)
{
	if (c >= 'a' && c <= 'z')
		return 1ULL << (c - 'a');
	if (c >= 'A' && c <= 'Z')
		return 1ULL << (c - 'A' + 26);
	if (c >= '0' && c <= '9')
		return 1ULL << (c - '0' + 52);
	return 0;
}

static __always_inline int is_version_char(char c)
{
	return (c >= '0' && c <= '9') || c == '.';
}

/*
 * The rule for the interpreter `file` is, found by its file name without a
 * version suffix (python3.12, perl5.36.0, lua5.4): a copy of bash under
 * another directory is still bash. NULL if it is no known interpreter.
 */
static __always_inline const struct interp_rule *interpreter_rule(struct file *file,
								  struct exec_scratch *s)
{
	const unsigned char *name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	struct interp_name key = {};
	long n;

	n = bpf_probe_read_kernel_str(s->name, sizeof(s->name), name);
	if (n <= 1)
		return NULL;
	n--;
	for (int i = 0; i < (int)sizeof(s->name); i++) {
		if (n <= 0 || !is_version_char(s->name[(n - 1) & (sizeof(s->name) - 1)]))
			break;
		n--;
	}
	if (n <= 0 || n >= INTERP_NAME)
		return NULL;
	for (int i = 0; i < INTERP_NAME - 1; i++)
		if (i < n)
			key.name[i] = s->name[i];
	return bpf_map_lookup_elem(&interpreters, &key);
}

/* The scan of an interpreter's argv for its script (see script_arg). */
struct argscan {
	struct interp_rule rule;
	__u32 len;       /* bytes of argv read */
	__u32 at_start;  /* the next byte starts an argument */
	__u32 argn;      /* arguments started so far */
	__u32 skip;      /* the next argument is an option's value */
	__u32 end_opts;  /* after "--": the next argument is the script */
	__u32 found;     /* offset + 1 of the script argument; 0 = none */
};

/* One argument starting at `off`: 1 = stop scanning (found or no script), 0 = go on. */
static __always_inline int argscan_arg(struct argscan *a, const char *argv, __u32 off)
{
	char c0 = argv[off & (ARGV_BYTES - 1)], c1, cj;
	__u64 bit;

	if (a->skip) {
		a->skip = 0;
		return 0;
	}
	if (c0 == 0)
		return 1; /* an empty argument names no file */
	if (a->end_opts || !(c0 == '-' || (c0 == '+' && a->rule.plus))) {
		a->found = off + 1;
		return 1;
	}
	c1 = argv[(off + 1) & (ARGV_BYTES - 1)];
	if (c1 == 0)
		return 1; /* "-": the program comes from stdin */
	if (c0 == '-' && c1 == '-') {
		/* "--" ends the options; a long option takes no value here. */
		if (argv[(off + 2) & (ARGV_BYTES - 1)] == 0)
			a->end_opts = 1;
		return 0;
	}
	/* A bundle of short options, as in `bash -ec` or `perl -lne`. */
	for (int j = 1; j < 8; j++) {
		cj = argv[(off + j) & (ARGV_BYTES - 1)];
		if (cj == 0)
			break;
		bit = letter_bit(cj);
		if (bit & a->rule.code)
			return 1;
		if (bit & a->rule.value) {
			if (argv[(off + j + 1) & (ARGV_BYTES - 1)] == 0)
				a->skip = 1;
			break;
		}
		if (bit & a->rule.attached)
			break;
	}
	return 0;
}

static long argscan_cb(__u64 i, void *ctx)
{
	struct argscan *a = ctx;
	struct exec_scratch *s = scratch_get();
	int start;

	if (!s || i >= a->len)
		return 1;
	start = a->at_start;
	a->at_start = s->argv[i & (ARGV_BYTES - 1)] == 0;
	if (!start)
		return 0;
	/* argv[0] is the interpreter itself. */
	if (a->argn++ == 0)
		return 0;
	return argscan_arg(a, s->argv, i);
}

/*
 * For an interpreter started on a script file (`bash x.sh`, `python3 -u
 * y.py`): copies the script argument into s->script and returns 1. The
 * script is the first argument that is neither an option nor an option's
 * value; options that put the program on the command line or stdin (-c, -e,
 * -m, -) mean there is none. Reads the new image's argv, which exec has just
 * written to its stack.
 */
static __always_inline int script_arg(struct task_struct *task, struct file *file,
				      struct exec_scratch *s)
{
	const struct interp_rule *rule = interpreter_rule(file, s);
	struct argscan a = {};
	unsigned long start, end;
	__u32 off, len;
	long n;

	if (!rule)
		return 0;
	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	if (end <= start)
		return 0;
	len = end - start;
	if (len > ARGV_BYTES)
		len = ARGV_BYTES;
	if (bpf_probe_read_user(s->argv, len, (void *)start))
		return 0;
	a.len = len;
	a.rule = *rule;
	a.at_start = 1;
	bpf_loop(ARGV_BYTES, argscan_cb, &a, 0);
	if (!a.found)
		return 0;
	off = (a.found - 1) & (ARGV_BYTES - 1);
	n = bpf_probe_read_kernel_str(s->script, sizeof(s->script), &s->argv[off]);
	/* An argument cut off by the scan's limit names no file we know. */
	return n > 1 && off + n <= a.len;
}

/*
 * The script identity of an exec, 0 if it is none: an interpreter started
 * through `#!` (bprm->interp then differs from bprm->filename, the script as
 * exec'd), or a known interpreter given a script argument. The identity is an
 * FNV-1a hash of the path without leading "./"; a relative path also hashes
 * the working directory's inode, so x.sh in two directories are two scripts.
 */
static __always_inline __u64 script_of(struct task_struct *task, struct linux_binprm *bprm,
				       struct exec_scratch *s)
{
	__u64 h = FNV_OFFSET, ino, dev;
	__u32 from = 0;
	char c;

	if (bprm->interp != bprm->filename) {
		if (bpf_probe_read_kernel_str(s->script, sizeof(s->script), bprm->filename) <= 1)
			return 0;
	} else if (!script_arg(task, bprm->file, s)) {
		return 0;
	}
	for (int i = 0; i < 8; i++) {
		if (s->script[from & (PATH_LEN - 1)] != '.' ||
		    s->script[(from + 1) & (PATH_LEN - 1)] != '/')
			break;
		from += 2;
	}
	for (int i = 0; i < PATH_LEN; i++) {
		__u32 j = from + i;

		if (j >= PATH_LEN)
			break;
		c = s->script[j];
		if (!c)
			break;
		h = (h ^ (__u8)c) * FNV_PRIME;
	}
	if (s->script[0] != '/') {
		ino = BPF_CORE_READ(task, fs, pwd.dentry, d_inode, i_ino);
		dev = BPF_CORE_READ(task, fs, pwd.dentry, d_sb, s_dev);
		h = (h ^ ino) * FNV_PRIME;
		h = (h ^ dev) * FNV_PRIME;
	}
	return h ? h : 1;
}

/* ---- absolute paths (profile creation only) -------------------------- */

struct dwalk {
	struct dentry *d;
	struct mount *m;
	__u32 pos; /* the path so far starts at dpath[pos] */
	__u32 done;
};

/* One step up: a name, or from a mount's root to where it is mounted. */
static long dwalk_cb(__u64 i, void *ctx)
{
	struct dwalk *w = ctx;
	struct exec_scratch *s = scratch_get();
	struct dentry *d = w->d, *parent;
	struct mount *m = w->m, *up;
	const unsigned char *name;
	__u32 len;

	if (!s)
		return 1;
	if (d == BPF_CORE_READ(m, mnt.mnt_root)) {
		up = BPF_CORE_READ(m, mnt_parent);
		if (up == m) {
			w->done = 1; /* the root of the task's mount tree */
			return 1;
		}
		w->d = BPF_CORE_READ(m, mnt_mountpoint);
		w->m = up;
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	len = BPF_CORE_READ(d, d_name.len);
	name = BPF_CORE_READ(d, d_name.name);
	if (len == 0 || len >= NAME_BOUND || w->pos < len + 1)
		return 1; /* too long for the buffer: no path */
	w->pos -= len;
	bpf_probe_read_kernel(&s->dpath[w->pos & DPATH_END], len & (NAME_BOUND - 1), name);
	w->pos--;
	s->dpath[w->pos & DPATH_END] = '/';
	/* A dentry that is its own parent and no mount's root is a pseudo file's
	 * (memfd): "/memfd:NAME", as /proc shows it. */
	if (parent == d) {
		w->done = 1;
		return 1;
	}
	w->d = parent;
	return 0;
}

/*
 * The absolute path of (dentry, vfsmount) as the task's mount namespace
 * sees it, like d_path() (which tracing programs may not call), into
 * s->dpath; returns where it starts, or -1. Exec time only: a bounded walk.
 */
static __always_inline int dpath(struct dentry *d, struct vfsmount *mnt, struct exec_scratch *s)
{
	struct dwalk w = {
		.d = d,
		.m = (void *)mnt - bpf_core_field_offset(struct mount, mnt),
		.pos = DPATH_END,
	};

	s->dpath[DPATH_END] = 0;
	bpf_loop(DPATH_DEPTH, dwalk_cb, &w, 0);
	if (!w.done)
		return -1;
	if (w.pos == DPATH_END) {
		w.pos--;
		s->dpath[w.pos & DPATH_END] = '/';
	}
	return w.pos & DPATH_END;
}

/* ---- admission: who may create a profile ------------------------------ */

/* Takes one of `uid`'s profiles; 0 if it has used its quota (or the count map is full). */
static __always_inline int quota_take(__u32 uid)
{
	__u32 zero = 0, *n;

	if (!uid_quota)
		return 1;
	n = bpf_map_lookup_elem(&uid_profiles, &uid);
	if (!n) {
		bpf_map_update_elem(&uid_profiles, &uid, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&uid_profiles, &uid);
		if (!n)
			return 0;
	}
	if (__sync_fetch_and_add(n, 1) >= uid_quota) {
		__sync_fetch_and_sub(n, 1);
		return 0;
	}
	return 1;
}

/* The key of a file without a name: (ANON_DEV | uid, hash of its dentry name). */
static __always_inline void anon_key(struct profile_key *key, struct file *file, __u32 uid,
				     struct exec_scratch *ws)
{
	__u64 h = FNV_OFFSET;
	char c;

	key->dev = ANON_DEV | uid;
	if (ws && bpf_probe_read_kernel_str(ws->anon, sizeof(ws->anon),
					    BPF_CORE_READ(file, f_path.dentry, d_name.name)) > 0) {
		for (int i = 0; i < ANON_NAME; i++) {
			c = ws->anon[i];
			if (!c)
				break;
			h = (h ^ (__u8)c) * FNV_PRIME;
		}
	}
	key->ino = h;
}

/* ---- profiles --------------------------------------------------------- */

/* The ebpfh lifecycle's state of a new (or reset) profile: nothing seen yet. */
static __always_inline void life_init(struct profile *p, __u64 now)
{
	p->novelty = NOVELTY_ONE;
	p->runs = 0;
	p->last_new_time = now;
	p->budget_time = 0;
	p->budget = 0;
	p->pending = 0;
	p->repeat_runs = 0;
}

/*
 * The profile of `file` (with `script`, a script profile: s->script holds its
 * path), created if new. 0 if there is none to be had.
 */
static __always_inline __u32 profile_for_file(struct file *file,
					      struct task_struct *task,
					      const char *filename, __u64 script,
					      const struct exec_scratch *s, __u64 now)
{
	struct profile_key key = {};
	struct ev_profile_created *e;
	struct exec_scratch *ws;
	struct profile *p;
	__u32 *found, slot, uid;
	int at;

	if (!file)
		return 0;
	uid = BPF_CORE_READ(task, cred, uid.val);
	ws = scratch_get();
	if (BPF_CORE_READ(file, f_inode, i_nlink) == 0) {
		/* memfd and friends: a new inode per exec would be a new profile each time. */
		anon_key(&key, file, uid, ws);
	} else {
		key.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
		key.ino = BPF_CORE_READ(file, f_inode, i_ino);
	}
	key.script = script;
	found = bpf_map_lookup_elem(&profile_index, &key);
	if (found)
		return *found;

	if (uid) {
		if (next_profile + root_reserve >= max_profiles) {
			count_stat(STAT_PROFILES_FULL);
			return 0;
		}
		if (!quota_take(uid)) {
			count_stat(STAT_QUOTA_REFUSED);
			return 0;
		}
	}
	slot = __sync_fetch_and_add(&next_profile, 1);
	if (slot >= max_profiles) {
		count_stat(STAT_PROFILES_FULL);
		return 0;
	}
	p = bpf_map_lookup_elem(&profiles, &slot);
	if (!p)
		return 0;
	if (bpf_map_update_elem(&profile_index, &key, &slot, BPF_NOEXIST)) {
		/* Another task created it first (or the index is full). */
		count_stat(STAT_INDEX_RACE);
		found = bpf_map_lookup_elem(&profile_index, &key);
		return found ? *found : 0;
	}
	p->key = key;
	p->normal_time = now + settings.normal_wait_ns;
	life_init(p, now);

	e = event_reserve(EV_PROFILE_CREATED, sizeof(*e));
	if (e) {
		event_header(&e->h, EV_PROFILE_CREATED, task, slot);
		e->key = key;
		e->filename[0] = 0;
		if (filename)
			bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
		e->script[0] = 0;
		e->path[0] = 0;
		e->cwd[0] = 0;
		if (script && s)
			bpf_probe_read_kernel_str(e->script, sizeof(e->script), s->script);
		/* The monitor may never see a short-lived process in /proc. */
		if (ws) {
			at = dpath(BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt), ws);
			if (at >= 0)
				bpf_probe_read_kernel_str(e->path, sizeof(e->path), &ws->dpath[at & DPATH_END]);
			if (script && s && s->script[0] != '/') {
				at = dpath(BPF_CORE_READ(task, fs, pwd.dentry),
					   BPF_CORE_READ(task, fs, pwd.mnt), ws);
				if (at >= 0)
					bpf_probe_read_kernel_str(e->cwd, sizeof(e->cwd),
								  &ws->dpath[at & DPATH_END]);
			}
		}
		bpf_ringbuf_submit(e, 0);
	}
	return slot;
}

/* ---- the profile state machine (§6, §7) ------------------------------- */

/*
 * pH's start_normal, minus what only the hot path does: training data becomes
 * the testing data, and counting starts over. The caller holds PROMOTING.
 */
static __always_inline void promote(struct profile *p, __u32 slot, __u32 state)
{
	table_op(slot, OP_COPY_TO_TEST);
	p->anomalies = 0;
	p->train_count = 0;
	p->last_mod_count = 0;
	p->budget = 0;
	p->budget_time = 0;
	p->pending = 0;
	p->repeat_runs = 0;
	p->state = (state & ~(PS_FROZEN | PS_PROMOTING | PS_TAINTED)) | PS_NORMAL;
}

/*
 * ebpfh lifecycle: forget what a normal profile learned since its testing
 * data was written (its pending pairs), so it can neither become normal
 * behaviour by itself nor be what a later freeze is based on.
 */
static __always_inline void drop_pending(struct profile *p, __u32 slot)
{
	if (p->pending)
		table_op(slot, OP_COPY_TO_TRAIN);
	p->pending = 0;
	p->repeat_runs = 0;
}

/* ebpfh lifecycle: the pending pairs become testing data (accept). */
static __always_inline __u32 accept_pending(struct profile *p, __u32 slot)
{
	__u32 n = p->pending;

	table_op(slot, OP_MERGE_TO_TEST);
	p->pending = 0;
	p->repeat_runs = 0;
	__sync_fetch_and_and(&p->state, ~PS_TAINTED);
	return n;
}

static __always_inline void freeze(struct profile *p, __u64 now)
{
	p->normal_time = now + settings.normal_wait_ns;
	__sync_fetch_and_or(&p->state, PS_FROZEN);
}

static __always_inline void start_normal(struct task_state *ts, struct profile *p,
					 __u32 slot, __u32 state)
{
	/* One task wins the right to copy; the others keep going. */
	if (__sync_val_compare_and_swap(&p->state, state, state | PS_PROMOTING) != state)
		return;
	emit_state(EV_NORMAL_STARTED, ts, p, slot, 0, NULL);
	promote(p, slot, state);
	lf_reset(ts);
}

static __always_inline void maybe_freeze(struct profile *p, __u64 now)
{
	__u64 train = p->train_count;
	__u64 normal = train - p->last_mod_count;

	if (normal > 0 && train * settings.normal_factor_den > normal * settings.normal_factor)
		freeze(p, now);
}

/*
 * ebpfh lifecycle, on a clean call of a training profile: one that taught
 * it nothing for normal_wait freezes even if no run of it ever ends (a
 * daemon). Two compares on the hot path.
 */
static __always_inline void maybe_freeze_quiet(struct profile *p, __u64 now)
{
	if (now > p->last_new_time + settings.normal_wait_ns && p->count >= FREEZE_MIN_CALLS)
		freeze(p, now);
}

/*
 * ebpfh lifecycle: a normal profile stops being normal. Its training data
 * goes back to its testing data, so it retrains from what it was, not from
 * what made it stop, and it needs a full convergence again.
 */
static __always_inline void stop_normal_ebpfh(struct profile *p, __u32 slot)
{
	drop_pending(p, slot);
	p->novelty = NOVELTY_ONE;
	p->budget = 0;
	p->budget_time = 0;
	__sync_fetch_and_and(&p->state, ~(PS_NORMAL | PS_TAINTED));
}

/* pH's training-data reset (tolerize limit; later the sensitize command). */
static __always_inline void reset_training(struct profile *p, __u32 slot)
{
	if (p->sequences)
		table_op(slot, OP_ZERO_TRAIN);
	p->train_count = 0;
	p->last_mod_count = 0;
	p->sequences = 0;
	p->anomalies = 0;
}

/*
 * Called on an anomalous call of a normal profile: does it stop normal
 * monitoring? pH counts anomalous calls since the profile turned normal
 * (the count before this call's increment). The ebpfh lifecycle counts
 * anomalous runs, each charged at its first anomaly, within a window of
 * normal_wait: one burst, however long, costs one.
 */
static __always_inline int over_budget(struct task_state *ts, struct profile *p, __u64 now)
{
	if (settings.lifecycle == LIFECYCLE_PH)
		return p->anomalies > settings.anomaly_limit;
	if (ts->run_lfc)
		return 0;
	if (now > p->budget_time + settings.normal_wait_ns) {
		p->budget_time = now;
		p->budget = 0;
	}
	return ++p->budget > settings.anomaly_limit;
}

/* `now` is read once per call, so a recording carries the time every step used. */
static __always_inline void on_syscall(struct task_state *ts, struct profile *p,
				       __u32 slot, __u32 c, __u64 now)
{
	__u32 d = ts->depth & (SIGSTACK - 1);
	struct frame *f = &ts->frames[d];
	__u32 pos = f->pos + 1;
	__u32 miss, train_miss, state, anomalous = 0, over_limit = 0;
	/*
	 * Bounded once here and kept whole on the stack, where the verifier
	 * keeps a 64-bit value's range: the two pair tests need no checks.
	 */
	__u64 prev[DISTANCES];
	struct row *row;

	f->pos = pos;
	f->win[pos & (RING - 1)] = c;
	/*
	 * Read back, c has one range for the verifier whichever branch of
	 * column() made it; otherwise it walks all that follows once per branch.
	 */
	c = col_index(f->win[pos & (RING - 1)]);
#pragma unroll
	for (int i = 0; i < DISTANCES; i++)
		prev[i] = col_index(f->win[(pos - 1 - i) & (RING - 1)]);
	p->count++;
	ts->count++;
#pragma unroll
	for (int i = 0; i < DISTANCES; i++)
		BENCH_KEEP(prev[i]);
	BENCH_STOP(3);

	/* Train: test against the training data, learn what it lacks. */
	row = row_get(p->train_row[c]);
	miss = train_miss = row_misses(row, prev);
	BENCH_KEEP(miss);
	BENCH_STOP(4);
	/*
	 * ebpfh lifecycle: a run that had anomalies (it made its profile stop
	 * being normal, or an operator took normal status away) teaches a
	 * profile that is not normal nothing, so that the profile cannot
	 * re-freeze on what made it stop. Only on a miss, which is rare.
	 */
	if (unlikely(miss && ts->run_lfc) && settings.lifecycle != LIFECYCLE_PH &&
	    !(p->state & PS_NORMAL))
		miss = 0;
	p->train_count++;
	if (miss) {
		if (settings.lifecycle == LIFECYCLE_PH) {
			if (p->state & PS_FROZEN)
				__sync_fetch_and_and(&p->state, ~PS_FROZEN);
		} else {
			/* Frozen tolerates rare novelty: the run's end decides. */
			ts->run_flags |= RUN_NEW;
			p->last_new_time = now;
			if (p->state & PS_NORMAL)
				p->pending++;
		}
		row = row_for_learning(p, c, row);
		/* sequences counts what was stored: normalize relies on it. */
		if (row) {
			row_learn(row, prev, miss);
			p->sequences++;
		}
		p->last_mod_count = 0;
		if (settings.log_sequences)
			emit_state(EV_NEW_SEQUENCE, ts, p, slot, 0, f);
	} else {
		p->last_mod_count++;
		if (settings.lifecycle == LIFECYCLE_PH) {
			if (!(p->state & PS_FROZEN))
				maybe_freeze(p, now);
		} else if (!(p->state & (PS_FROZEN | PS_NORMAL))) {
			maybe_freeze_quiet(p, now);
		}
	}

	/* Promote a frozen profile whose wait is over. */
	state = p->state;
	if ((state & (PS_FROZEN | PS_PROMOTING)) == PS_FROZEN &&
	    now > p->normal_time)
		start_normal(ts, p, slot, state);

	/* Detect against the testing data. */
	if (p->state & PS_NORMAL) {
		/*
		 * Testing's row is training's, which had every pair and was not
		 * written since: no miss, and no second row to read (the common
		 * case of a normal profile).
		 */
		if (!train_miss && p->test_row[c] == p->train_row[c])
			anomalous = 0;
		else
			anomalous = __builtin_popcount(row_misses(row_get(p->test_row[c]), prev));
		if (anomalous)
			over_limit = over_budget(ts, p, now);
		if (over_limit) {
			if (settings.lifecycle == LIFECYCLE_PH)
				__sync_fetch_and_and(&p->state, ~PS_NORMAL);
			else
				stop_normal_ebpfh(p, slot);
			lf_reset(ts);
		}
	}
	lf_feed(ts, anomalous);
	if (anomalous) {
		struct ev_anomaly *e;

		if (ts->lfc > ts->run_lfc)
			ts->run_lfc = ts->lfc;
		p->anomalies++;
		e = event_reserve(EV_ANOMALY, sizeof(*e));
		if (e) {
			event_header(&e->h, EV_ANOMALY, bpf_get_current_task_btf(), slot);
			window_out(e->window, f);
			e->misses = anomalous;
			e->new_pairs = __builtin_popcount(miss);
			e->unknown = anomalous == DISTANCES &&
				     row_empty(row_get(p->test_row[c]));
			e->lfc = ts->lfc;
			e->profile_anomalies = p->anomalies;
			e->task_count = ts->count;
			bpf_ringbuf_submit(e, 0);
		}
	}
	if (over_limit)
		emit_state(EV_NORMAL_STOPPED, ts, p, slot, STOP_ANOMALY_LIMIT, NULL);

	/*
	 * Tolerize limit. pH resets the training data on every call above it
	 * (and with it the anomaly count, so its anomaly limit never trips);
	 * we report once per crossing. The ebpfh lifecycle acts once per
	 * crossing too: the pending pairs go and the profile is tainted.
	 */
	if (ts->lfc > settings.tolerize_limit) {
		if (settings.lifecycle == LIFECYCLE_PH)
			reset_training(p, slot);
		if (!ts->tolerized) {
			ts->tolerized = 1;
			if (settings.lifecycle != LIFECYCLE_PH && (p->state & PS_NORMAL)) {
				drop_pending(p, slot);
				__sync_fetch_and_or(&p->state, PS_TAINTED);
			}
			emit_state(EV_TOLERIZE_LIMIT, ts, p, slot, 0, NULL);
		}
	} else {
		ts->tolerized = 0;
	}
}

/*
 * The minor-LFC threshold: a run of a normal profile whose LFC went above it
 * taints the profile (its pending pairs then wait for the operator).
 */
static __always_inline __u32 minor_lfc(void)
{
	return settings.tolerize_limit / 2;
}

/*
 * ebpfh lifecycle: a run of the task's profile ended (the task exited, or
 * exec'd another image: by_exec). Updates the novelty EWMA and takes the
 * run-based steps: freeze, thaw, taint, or accept the pending pairs once
 * ACCEPT_RUNS runs have shown them again (anomalous, below the minor LFC,
 * nothing new learned: every anomaly of such a run was a pending pair).
 * A launch stub (forked, then exec'd, having taught nothing) is no evidence
 * about the profile's own work: it only taints (docs/lifecycle.md, "Runs").
 * Runs only here, never per call.
 */
static __always_inline void run_end(struct task_state *ts, __u64 now, int by_exec)
{
	__u32 slot = ts->profile, novelty, state;
	struct profile *p;

	if (settings.lifecycle == LIFECYCLE_PH || !settings.monitoring || !ts->count)
		return;
	p = slot ? bpf_map_lookup_elem(&profiles, &slot) : NULL;
	if (!p)
		return;
	novelty = p->novelty;
	state = p->state;
	if (by_exec && (ts->run_flags & (RUN_FORKED | RUN_NEW)) == RUN_FORKED) {
		if ((state & (PS_NORMAL | PS_PROMOTING)) == PS_NORMAL &&
		    ts->run_lfc > minor_lfc()) {
			__sync_fetch_and_or(&p->state, PS_TAINTED);
			p->repeat_runs = 0;
		}
		return;
	}
	p->runs++;
	novelty -= novelty >> NOVELTY_SHIFT;
	if (ts->run_flags & RUN_NEW)
		novelty += NOVELTY_ONE >> NOVELTY_SHIFT;
	p->novelty = novelty;
	if (state & PS_PROMOTING)
		return;
	if (state & PS_NORMAL) {
		if (ts->run_lfc > minor_lfc()) {
			__sync_fetch_and_or(&p->state, PS_TAINTED);
			p->repeat_runs = 0;
		} else if (p->pending && ts->run_lfc && !(ts->run_flags & RUN_NEW) &&
			   !(state & PS_TAINTED) && ++p->repeat_runs >= ACCEPT_RUNS) {
			__u32 n = accept_pending(p, slot);

			emit_state(EV_PENDING_ACCEPTED, ts, p, slot, n, NULL);
		}
	} else if (state & PS_FROZEN) {
		/* Only a novel run thaws: a clean one never undoes a quiet freeze. */
		if ((ts->run_flags & RUN_NEW) && novelty > NOVELTY_THAW)
			__sync_fetch_and_and(&p->state, ~PS_FROZEN);
	} else if (novelty < NOVELTY_FREEZE && p->count >= FREEZE_MIN_CALLS) {
		freeze(p, now);
	}
}

/* ---- hooks ------------------------------------------------------------ */

/* Responses never touch PID 1, the monitor, or what the policy map exempts. */
static __always_inline int may_respond(__u32 tgid, const struct profile *p)
{
	__u8 *pol;

	if (tgid == 1 || tgid == settings.monitor_tgid)
		return 0;
	pol = bpf_map_lookup_elem(&policy, &p->key);
	return pol ? *pol != POLICY_ALLOW : !settings.respond_listed;
}

/*
 * pH's delay response: a task with recent anomalies (LFC > 0) waits
 * 2^LFC x delay_factor before it goes on. BPF cannot sleep, so the task is
 * stopped (it stops on its way back to user space, after this call) and the
 * monitor resumes it when the delay is over. The stop is sent only once the
 * event that tells the monitor is reserved: a task nobody would resume is
 * never stopped. Never PID 1, the monitor, or an allow-listed executable.
 */
static __always_inline void respond_delay(struct task_struct *task, struct task_state *ts,
					  struct profile *p, __u32 slot)
{
	struct ev_delay *e;
	__u32 tgid = task->tgid, shift = ts->lfc < 20 ? ts->lfc : 20;
	__u64 delay = (__u64)settings.delay_factor_ms << shift;

	if (!may_respond(tgid, p))
		return;
	if (delay > settings.max_delay_ms)
		delay = settings.max_delay_ms;
	e = event_reserve(EV_DELAY, sizeof(*e));
	if (!e)
		return;
	event_header(&e->h, EV_DELAY, task, slot);
	e->delay_ms = delay;
	e->lfc = ts->lfc;
	bpf_ringbuf_submit(e, 0);
	bpf_send_signal(SIGSTOP);
}

/*
 * Is this call a 32-bit one (int 0x80 / ia32 task)? Its number means another
 * call than the same native number, so it must not be read as one: otherwise
 * a 64-bit program could disguise calls by issuing them through int 0x80.
 */
static __always_inline int compat_call(struct task_struct *task)
{
#if defined(__TARGET_ARCH_x86)
	return task->thread_info.status & TS_COMPAT;
#else
	return 0; /* arm64 compat tasks: not told apart yet */
#endif
}

static __always_inline int pops_frame(long id, int compat)
{
#if defined(__TARGET_ARCH_x86)
	if (compat)
		return id == NR_ia32_rt_sigreturn || id == NR_ia32_sigreturn;
	return id == NR_rt_sigreturn || id == NR_x32_rt_sigreturn;
#else
	return id == NR_rt_sigreturn;
#endif
}

/* TP_PROTO(struct pt_regs *regs, long id) */
SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_state *ts;
	struct profile *p;
	int compat, processed = 0;
	__u32 slot, c;
	__u64 now;

	ts = bpf_task_storage_get(&tasks, task, 0, 0);
	BENCH_STOP(1, 0);
	if (!ts)
		return 0;
	slot = ts->profile;
	p = slot ? bpf_map_lookup_elem(&profiles, &slot) : NULL;
	BENCH_STOP(2, 0);
	if (!p)
		return 0;
	compat = compat_call(task);
	c = compat ? COL_OTHER : column(id);
	if (c == COL_OTHER)
		count_stat(STAT_OTHER_IDS);
	if (settings.monitoring) {
		now = now_tai();
		if (unlikely(settings.record) && recording(ts))
			trace_call(bpf_get_current_pid_tgid(), TR_CALL, col_symbol(c), now);
		on_syscall(ts, p, slot, c, now);
		processed = 1;
		if (unlikely(settings.delay_factor_ms) && ts->lfc)
			respond_delay(task, ts, p, slot);
	}

	/*
	 * Returning from a handler ends its frame: its return call is its last
	 * call, then pop (docs/algorithm.md, "Windows and frames"). Pops
	 * happen while paused too, or the frames pushed meanwhile would never
	 * go away.
	 */
	if (unlikely(pops_frame(id, compat))) {
		if (ts->overflow)
			ts->overflow--;
		else if (ts->depth)
			ts->depth--;
		/* A replay pops by itself only on a recorded native rt_sigreturn. */
		if (unlikely(settings.record) && recording(ts) &&
		    !(processed && c == NR_rt_sigreturn))
			trace_call(bpf_get_current_pid_tgid(), TR_SIGRETURN, 0, now_tai());
	}
	return 0;
}

/* TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct exec_scratch *s = NULL;
	struct task_state *ts;
	__u64 script = 0;
	__u32 slot;

	if (task->tgid == settings.monitor_tgid)
		return 0;
	/*
	 * Runs only after a successful exec (docs/algorithm.md,
	 * "Association before exec succeeded"). For a #! script bprm->file
	 * is already the interpreter; with script profiles on, the script
	 * gets a profile of its own under the interpreter (script_of).
	 */
	__u64 now = now_tai();

	/* The old image's run ends here (a task's first exec has none). */
	ts = bpf_task_storage_get(&tasks, task, 0, 0);
	if (ts)
		run_end(ts, now, 1);
	if (script_profiles) {
		s = scratch_get();
		if (s)
			script = script_of(task, bprm, s);
	}
	slot = profile_for_file(bprm->file, task, bprm->filename, script, s, now);
	if (!slot) {
		/* No profile for the new image: stop attributing it to the old one. */
		bpf_task_storage_delete(&tasks, task);
		return 0;
	}
	ts = task_start(task, slot);
	if (!ts)
		return 0;
	if (unlikely(settings.record)) {
		/* The recorder's own children start the recorded tree. */
		if (settings.record == RECORD_TREE &&
		    BPF_CORE_READ(task, real_parent, tgid) == settings.record_root)
			ts->recorded = 1;
		if (recording(ts))
			trace_task(task, TR_EXEC, slot, bpf_map_lookup_elem(&profiles, &slot), now);
	}
	return 0;
}

/* TP_PROTO(struct task_struct *parent, struct task_struct *child) */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct task_state *pts, *cts;
	struct frame *f;

	pts = bpf_task_storage_get(&tasks, parent, 0, 0);
	if (!pts || child->tgid == settings.monitor_tgid)
		return 0;
	cts = bpf_task_storage_get(&tasks, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!cts) {
		count_stat(STAT_TASKS_FAILED);
		return 0;
	}
	/*
	 * The child (process or thread) continues the parent's current
	 * sequence, so forking cannot be used to break a sequence; its
	 * locality frame starts fresh.
	 */
	f = &pts->frames[pts->depth & (SIGSTACK - 1)];
	cts->frames[0] = *f;
	cts->profile = pts->profile;
	cts->depth = 0;
	cts->overflow = 0;
	cts->count = 0;
	cts->run_flags = RUN_FORKED;
	cts->run_lfc = 0;
	cts->recorded = pts->recorded;
	lf_reset(cts);
	if (unlikely(settings.record) && recording(cts))
		trace_task(child, TR_FORK, BPF_CORE_READ(parent, pid), NULL, now_tai());
	return 0;
}

/* TP_PROTO(struct task_struct *p) — runs in the exiting task. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *task)
{
	struct task_state *ts;
	__u64 now;

	ts = bpf_task_storage_get(&tasks, task, 0, 0);
	if (!ts)
		return 0;
	now = now_tai();
	if (unlikely(settings.record) && recording(ts))
		trace_call(BPF_CORE_READ(task, pid), TR_EXIT, 0, now);
	run_end(ts, now, 0);
	bpf_task_storage_delete(&tasks, task);
	return 0;
}

/* TP_PROTO(int sig, struct kernel_siginfo *info, struct k_sigaction *ka) */
SEC("tp_btf/signal_deliver")
int BPF_PROG(signal_deliver, int sig, struct kernel_siginfo *info, struct k_sigaction *ka)
{
	unsigned long handler = (unsigned long)BPF_CORE_READ(ka, sa.sa_handler);
	struct task_state *ts;
	__u32 d;

	if (handler == SIG_DFL_HANDLER || handler == SIG_IGN_HANDLER)
		return 0;
	ts = bpf_task_storage_get(&tasks, bpf_get_current_task_btf(), 0, 0);
	if (!ts)
		return 0;
	if (unlikely(settings.record) && recording(ts))
		trace_call(bpf_get_current_pid_tgid(), TR_SIGNAL, 0, now_tai());
	/* A handler's calls get their own frame; rt_sigreturn pops it. */
	d = ts->depth + 1;
	if (d >= SIGSTACK || ts->overflow) {
		ts->overflow++;
		count_stat(STAT_SIGSTACK_OVERFLOW);
		return 0;
	}
	ts->depth = d;
	frame_empty(&ts->frames[d & (SIGSTACK - 1)]);
	return 0;
}

/*
 * Start-up sweep: give every process that already runs a profile (from its
 * mm->exe_file, computed here like at exec) and a fresh window, so the
 * system is watched at once, not only from the next exec. All threads, not
 * just leaders, and never the monitor or kernel threads.
 */
SEC("iter/task")
int adopt_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct task_state *ts;
	struct file *exe;
	__u32 slot;
	__u64 now;

	if (!task || (task->flags & PF_KTHREAD) || task->tgid == settings.monitor_tgid)
		return 0;
	ts = bpf_task_storage_get(&tasks, task, 0, 0);
	if (ts)
		return 0;
	exe = BPF_CORE_READ(task, mm, exe_file);
	now = now_tai();
	/* Scripts already running stay with their interpreter's profile. */
	slot = profile_for_file(exe, task, NULL, 0, NULL, now);
	if (!slot)
		return 0;
	if (!task_start(task, slot))
		return 0;
	if (settings.record == RECORD_ALL)
		trace_task(task, TR_ADOPT, slot, bpf_map_lookup_elem(&profiles, &slot), now);
	return 0;
}

/*
 * pH's execve abort: a task that has become too anomalous may not start a
 * new program. Needs the BPF LSM; the monitor loads this program only where
 * the kernel accepts it (probed at start) and says so otherwise.
 * LSM_HOOK(int, 0, bprm_check_security, struct linux_binprm *bprm)
 */
SEC("lsm/bprm_check_security")
int BPF_PROG(exec_check, struct linux_binprm *bprm, int ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ev_execve_denied *e;
	struct task_state *ts;
	struct profile *p;
	__u32 slot, kill;

	if (ret || !settings.abort_execve)
		return ret;
	ts = bpf_task_storage_get(&tasks, task, 0, 0);
	if (!ts || ts->lfc <= settings.abort_execve)
		return 0;
	slot = ts->profile;
	p = slot ? bpf_map_lookup_elem(&profiles, &slot) : NULL;
	if (!p || !may_respond(task->tgid, p))
		return 0;
	kill = settings.execve_kill;
	e = event_reserve(EV_EXECVE_DENIED, sizeof(*e));
	if (e) {
		event_header(&e->h, EV_EXECVE_DENIED, task, slot);
		e->lfc = ts->lfc;
		e->killed = kill;
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), bprm->filename);
		bpf_ringbuf_submit(e, 0);
	}
	if (kill)
		bpf_send_signal(SIGKILL);
	return -EPERM;
}

/*
 * Operator commands (normalize, sensitize, tolerize, reset, freeze), run by
 * the monitor with BPF_PROG_TEST_RUN so they share the kernel's own table
 * code and run next to the hot path's atomics instead of racing it from
 * userspace. Events for them are written by the monitor.
 */
SEC("syscall")
int command(struct command_args *args)
{
	__u32 slot = args->slot, state;
	struct profile *p;

	p = slot ? bpf_map_lookup_elem(&profiles, &slot) : NULL;
	if (!p || (!p->key.dev && !p->key.ino)) {
		args->result = -ENOENT;
		return 0;
	}
	state = p->state;
	args->result = 0;
	switch (args->op) {
	case CMD_NORMALIZE:
		/* An untrained profile would flag every call (docs/algorithm.md). */
		if (!p->sequences) {
			args->result = -ENODATA;
			break;
		}
		state &= ~PS_PROMOTING;
		if (__sync_val_compare_and_swap(&p->state, state, state | PS_PROMOTING) != state) {
			args->result = -EBUSY;
			break;
		}
		promote(p, slot, state);
		break;
	case CMD_SENSITIZE:
		/*
		 * The ebpfh lifecycle keeps a normal profile's training data a
		 * superset of its testing data: there, sensitize drops what is
		 * pending; elsewhere it forgets the training data, as pH does.
		 */
		if (settings.lifecycle != LIFECYCLE_PH && (state & PS_NORMAL)) {
			drop_pending(p, slot);
			break;
		}
		reset_training(p, slot);
		if (settings.lifecycle != LIFECYCLE_PH) {
			p->novelty = NOVELTY_ONE;
			p->pending = 0;
			p->repeat_runs = 0;
		}
		break;
	case CMD_TOLERIZE:
		/* A taint only means something on a normal profile. */
		__sync_fetch_and_and(&p->state, ~(PS_NORMAL | PS_TAINTED));
		break;
	case CMD_RESET:
		table_op(slot, OP_ZERO_BOTH);
		p->count = 0;
		p->train_count = 0;
		p->last_mod_count = 0;
		p->sequences = 0;
		p->anomalies = 0;
		p->normal_time = now_tai() + settings.normal_wait_ns;
		life_init(p, now_tai());
		p->state = 0;
		break;
	case CMD_FREEZE:
		p->normal_time = now_tai() + settings.normal_wait_ns;
		__sync_fetch_and_or(&p->state, PS_FROZEN);
		break;
	case CMD_ACCEPT:
		/* Only a normal profile has pending pairs; EAGAIN: not normal. */
		if (!(state & PS_NORMAL)) {
			args->result = -EAGAIN;
			break;
		}
		if (!p->pending && !(state & PS_TAINTED)) {
			args->result = -ENODATA;
			break;
		}
		accept_pending(p, slot);
		break;
	default:
		args->result = -EINVAL;
	}
	return 0;
}

/* ---- fleet imports ----------------------------------------------------- */

/* An IMPORT_MERGE in progress: the target, and rows reserved for it. */
struct merge_ctx {
	__u32 slot;
	__u32 next; /* reserved rows not used yet: next .. end-1 */
	__u32 end;
};

/* The next reserved row; 0 cannot happen: need_cb counted every use. */
static __always_inline __u32 merge_take(struct merge_ctx *m)
{
	return m->next < m->end ? m->next++ : 0;
}

/* The target's row for c in table tab, taking a reserved one if it has none yet. */
static __always_inline struct row *row_for_merge(struct merge_ctx *m, __u16 *tab, __u32 c)
{
	__u32 r = tab[col_index(c)];

	if (r)
		return row_get(r);
	r = merge_take(m);
	if (!r)
		return NULL;
	/* The hot path may give the symbol a row meanwhile; then the reserved one is unused. */
	return row_get(row_cas(tab, c, 0, r));
}

static __always_inline void row_or(struct row *dst, const struct row *src)
{
	for (int w = 0; w < NCOLS / 8; w++)
		if (src->w[w])
			__sync_fetch_and_or(&dst->w[w], src->w[w]);
}

/* Counts the rows a merge may have to add to the target (symbols only the staged profile has). */
static long need_cb(__u64 i, void *ctx)
{
	struct merge_ctx *m = ctx;
	__u32 c = col_index(i), zero = 0;
	struct profile *p = bpf_map_lookup_elem(&profiles, &m->slot);
	struct profile *s = bpf_map_lookup_elem(&profiles, &zero);

	if (!p || !s)
		return 1;
	if (s->train_row[c] && !p->train_row[c])
		m->end++;
	if (s->test_row[c] && !p->test_row[c])
		m->end++;
	return 0;
}

/* ORs the staged profile's rows for one symbol into the target's. */
static long merge_cb(__u64 i, void *ctx)
{
	struct merge_ctx *m = ctx;
	__u32 c = col_index(i), zero = 0;
	struct profile *p = bpf_map_lookup_elem(&profiles, &m->slot);
	struct profile *s = bpf_map_lookup_elem(&profiles, &zero);
	struct row *src, *dst;

	if (!p || !s)
		return 1;
	src = row_get(s->train_row[c]);
	if (src) {
		dst = row_for_merge(m, p->train_row, c);
		if (dst)
			row_or(dst, src);
	}
	src = row_get(s->test_row[c]);
	if (src) {
		dst = row_for_merge(m, p->test_row, c);
		if (dst)
			row_or(dst, src);
	}
	return 0;
}

static __always_inline __u64 max64(__u64 a, __u64 b)
{
	return a > b ? a : b;
}

/*
 * Merges the profile the monitor staged in slot 0 into `slot`: pairs are
 * ORed in (training into training, testing into testing), each counter takes
 * the larger value, and the state becomes the staged one, which the monitor
 * computed from the state it read (`expect`). Holding PROMOTING, like
 * normalize, keeps a promotion from running at the same time; the rows it may
 * need are reserved first, so it either merges everything or (ENOSPC, EBUSY)
 * changes nothing.
 */
SEC("syscall")
int import(struct import_args *args)
{
	__u32 slot = args->slot, zero = 0, n, first;
	struct merge_ctx m = {};
	struct profile *p, *s;

	args->result = 0;
	switch (args->op) {
	case IMPORT_RESERVE_ROWS:
		n = args->count;
		if (n > max_rows || next_row > max_rows - n) {
			args->result = -ENOSPC;
			return 0;
		}
		first = __sync_fetch_and_add(&next_row, n);
		if (first > max_rows - n) {
			args->result = -ENOSPC; /* lost a race for the last rows */
			return 0;
		}
		args->result = first;
		return 0;
	case IMPORT_RESERVE_SLOT:
		first = __sync_fetch_and_add(&next_profile, 1);
		if (first >= max_profiles) {
			count_stat(STAT_PROFILES_FULL);
			args->result = -ENOSPC;
			return 0;
		}
		args->result = first;
		return 0;
	case IMPORT_MERGE:
		break;
	default:
		args->result = -EINVAL;
		return 0;
	}

	p = slot ? bpf_map_lookup_elem(&profiles, &slot) : NULL;
	s = bpf_map_lookup_elem(&profiles, &zero);
	if (!p || !s || (!p->key.dev && !p->key.ino)) {
		args->result = -ENOENT;
		return 0;
	}
	if (__sync_val_compare_and_swap(&p->state, args->expect, args->expect | PS_PROMOTING) !=
	    args->expect) {
		args->result = -EBUSY;
		return 0;
	}
	/*
	 * Where the target's tables share a row, each gets its own first, so
	 * that each table's pairs go to its own row; the copies change no
	 * pair, so a full pool here still changes nothing.
	 */
	if (table_op(slot, OP_UNSHARE_FOR_IMPORT)) {
		__sync_fetch_and_and(&p->state, ~PS_PROMOTING);
		args->result = -ENOSPC;
		return 0;
	}
	m.slot = slot;
	bpf_loop(NCOLS, need_cb, &m, 0);
	if (m.end) {
		n = m.end;
		if (n > max_rows || next_row > max_rows - n) {
			__sync_fetch_and_and(&p->state, ~PS_PROMOTING);
			args->result = -ENOSPC;
			return 0;
		}
		first = __sync_fetch_and_add(&next_row, n);
		if (first > max_rows - n) {
			__sync_fetch_and_and(&p->state, ~PS_PROMOTING);
			args->result = -ENOSPC;
			return 0;
		}
		m.next = first;
		m.end = first + n;
	}
	bpf_loop(NCOLS, merge_cb, &m, 0);

	p->count = max64(p->count, s->count);
	p->sequences = max64(p->sequences, s->sequences);
	p->normal_time = max64(p->normal_time, s->normal_time);
	if (args->flags & IMPORT_PROMOTE) {
		p->anomalies = 0;
		p->train_count = 0;
		p->last_mod_count = 0;
	} else {
		p->anomalies = max64(p->anomalies, s->anomalies);
		p->train_count = max64(p->train_count, s->train_count);
		p->last_mod_count = max64(p->last_mod_count, s->last_mod_count);
	}
	/* The monitor counted the merged profile's pending pairs; the rest of the lifecycle is local. */
	p->pending = s->pending;
	p->state = s->state & ~PS_PROMOTING;
	return 0;
}

/* `ebpfh ps`: one task_record per traced task, written to the iterator's file. */
SEC("iter/task")
int dump_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct task_record r = {};
	struct task_state *ts;

	if (!task)
		return 0;
	ts = bpf_task_storage_get(&tasks, task, 0, 0);
	if (!ts)
		return 0;
	r.tgid = task->tgid;
	r.tid = task->pid;
	r.ppid = BPF_CORE_READ(task, real_parent, tgid);
	r.uid = BPF_CORE_READ(task, cred, uid.val);
	r.profile = ts->profile;
	r.lfc = ts->lfc;
	r.lfc_max = ts->lfc_max;
	r.depth = ts->depth;
	r.count = ts->count;
	BPF_CORE_READ_STR_INTO(&r.comm, task, comm);
	r.cgroup = task_cgroup(task);
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
