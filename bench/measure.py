"""How bench.py takes one measurement and decides whether the machine disturbed it.

A sample is one run of a workload to completion. Around it we read the machine's CPU accounting
(/proc/stat), the CPU time of every process we know is involved (the workload itself through
wait4's rusage, the tracer's processes, a server's process tree) and, when asked, the run counters
of the tracer's BPF programs (/proc/PID/fdinfo: run_time_ns and run_cnt, counted while
kernel.bpf_stats_enabled is 1). A sample is *disturbed* when

  load           other processes used more than FOREIGN_CPU of a CPU on average during the run
                 (user+system time on all CPUs, less the CPU time of the processes we know)
  steal          the hypervisor took more than STEAL of the machine's CPU time
  preempted      a pinned single-process loop got less than SOLO_CPU of its wall time on a CPU
  foreign_calls  the tracer's sys_enter program ran FOREIGN_CALLS more often than the loop made
                 calls (someone else's syscalls are in the per-run average)
  stats_on       the tracer's programs were timed while we had bpf_stats off (someone else
                 enabled it, so the wall time carries its cost)

and disturbed samples are retried, then left out (but kept in results.json)."""

import os
import subprocess
import sys
import time

FOREIGN_CPU = 0.15
STEAL = 0.03
SOLO_CPU = 0.93
FOREIGN_CALLS = 0.10
TICK = os.sysconf("SC_CLK_TCK")
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def cpu_counters():
    """(user+nice+system seconds, steal seconds) summed over all CPUs. Interrupt time is left
    out: loopback networking runs in softirq on behalf of the workload."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, steal = int(fields[1]), int(fields[2]), int(fields[3]), int(fields[8])
    return (user + nice + system) / TICK, steal / TICK


def proc_cpu(pids):
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += (int(rest[11]) + int(rest[12])) / TICK
        except (OSError, IndexError, ValueError):
            pass
    return total


def tree(pid):
    """pid and all its descendants (a server's master and workers, strace and its tracee)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kthreads(prefix):
    """The pids of the kernel threads whose name starts with prefix."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().startswith(prefix):
                        out.append(int(d))
            except OSError:
                pass
    return out


def prog_counters(pids):
    """{prog_id: (run_time_ns, run_cnt)} for the BPF programs the processes hold open."""
    out = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            except OSError:
                continue
            if "prog_id" in info and "run_cnt" in info:
                out[int(info["prog_id"])] = (int(info["run_time_ns"]), int(info["run_cnt"]))
    return out


class BpfStats:
    """kernel.bpf_stats_enabled on for a block, then back to what it was."""

    def __enter__(self):
        with open(STATS_SYSCTL) as f:
            self.old = f.read().strip()
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")

    def __exit__(self, *exc):
        with open(STATS_SYSCTL, "w") as f:
            f.write(self.old)


class StatsOffForRun:
    """kernel.bpf_stats_enabled off for a whole run when someone left it on: wall times must not
    carry its clock reads. Put back as it was at the end."""

    def __enter__(self):
        self.old = None
        if os.geteuid() == 0 and stats_enabled():
            with open(STATS_SYSCTL) as f:
                self.old = f.read().strip()
            with open(STATS_SYSCTL, "w") as f:
                f.write("0")
            print("[bench] kernel.bpf_stats_enabled was on: off for this run, back on at its end",
                  file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.old is not None:
            with open(STATS_SYSCTL, "w") as f:
                f.write(self.old)


def stats_enabled():
    with open(STATS_SYSCTL) as f:
        return f.read().strip() != "0"


def sample(argv, known=(), solo=False, progs=None, calls=None, stats=False, preexec=None):
    """Runs argv to completion and returns (stdout, record). `known`: pids whose CPU time is
    part of the measurement; `solo`: argv is one process that should own its CPU; `progs`: pids
    holding the tracer's BPF programs (their counters are read); `calls`: syscalls the loop makes;
    `stats`: bpf_stats is on for this sample on purpose; `preexec`: run in the child before exec."""
    known = list(known)
    c0, s0, k0 = *cpu_counters(), proc_cpu(known)
    p0 = prog_counters(progs) if progs else {}
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {p.returncode}")
    c1, s1, k1 = *cpu_counters(), proc_cpu(known)
    p1 = prog_counters(progs) if progs else {}
    child = ru.ru_utime + ru.ru_stime
    rec = {"wall_s": round(wall, 4), "cpu_s": round(child, 4),
           "foreign_cpu": round(max(0.0, (c1 - c0) - child - (k1 - k0)) / wall, 3),
           "steal": round((s1 - s0) / wall / os.cpu_count(), 3)}
    why = []
    if rec["foreign_cpu"] > FOREIGN_CPU:
        why.append("load")
    if rec["steal"] > STEAL:
        why.append("steal")
    if solo and child / wall < SOLO_CPU:
        why.append("preempted")
    if progs:
        d = {i: (p1[i][0] - p0.get(i, (0, 0))[0], p1[i][1] - p0.get(i, (0, 0))[1]) for i in p1}
        rt = sum(v[0] for v in d.values())
        # The program that ran most is the one on sys_enter; the others (an exit hook, ebpfh's
        # process-lifecycle programs) are in ns_per_call_all.
        main_rt, cnt = max(d.values(), key=lambda v: v[1], default=(0, 0))
        if stats:
            rec["run_cnt"] = cnt
            rec["ns_per_run"] = round(main_rt / cnt, 1) if cnt else None
            rec["ns_per_call_all"] = round(rt / cnt, 1) if cnt else None
            if calls and cnt > calls * (1 + FOREIGN_CALLS):
                why.append("foreign_calls")
        elif rt:
            why.append("stats_on")
    rec["disturbed"] = why
    return out, rec


def spread(vals):
    """min / median / max and how many values they rest on."""
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    n = len(vals)
    med = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    return {"min": round(vals[0], 2), "median": round(med, 2), "max": round(vals[-1], 2), "n": n}


def paired(pairs, pct=False):
    """The spread of per-session differences between a traced value and the untraced baseline
    measured right around it (pairs of (traced, baseline); a pair lacking either is skipped).
    Pairing cancels what drifts between sessions (load, frequency, what else is cached); the
    median of the differences is the figure. pct: (traced / baseline - 1) x 100 instead."""
    diffs = [((t / b - 1) * 100 if pct else t - b) for t, b in pairs
             if t is not None and b is not None and (b or not pct)]
    return spread(diffs)


# Two runs agree on a figure when it moved by at most TOLERANCE of its earlier value; a figure
# that is itself a small difference of two wall times (added ns per call) also when it moved by
# at most ABS_NS (2.5% of a 200 ns call); a "% over untraced" figure when it moved by at most
# POINTS percentage points (10% against 12% is not a 20% disagreement) or by TOLERANCE of itself,
# whichever is more (strace's +6616% against +6155% is a 7% move; the two meet at 33%).
TOLERANCE = 0.15
ABS_NS = 5.0
POINTS = 5.0


def agrees(key, before, now):
    """(difference, agrees, by what) for one figure of two runs; difference is relative except
    for % figures (points). None, None, None when either value is missing."""
    if before is None or now is None:
        return None, None, None
    if key.endswith(".pct"):
        diff = now - before
        if abs(diff) <= POINTS:
            return diff, True, "points"
        ok = abs(diff) <= TOLERANCE * abs(before)
        return diff, ok, "relative" if ok else None
    diff = (now - before) / abs(before) if before else None
    if diff is not None and abs(diff) <= TOLERANCE:
        return diff, True, "relative"
    if key.endswith(".added_ns") and abs(now - before) <= ABS_NS:
        return diff, True, "absolute"
    return diff, False, None


def comparable(doc):
    """Raises ValueError, saying why, unless doc (a parsed results.json) has what compare() reads
    of an earlier run: checked before a run starts, not after its twenty minutes."""
    figures = doc.get("figures") if isinstance(doc, dict) else None
    if not isinstance(figures, dict) or not figures:
        raise ValueError("it has no figures, so it is not a results.json or is one of an older bench.py")
    for k, v in figures.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"its figure {k} is not a number")
    verdict = doc.get("verdict", {})
    order = verdict.get("vs_bpftrace", {}) if isinstance(verdict, dict) else None
    if not isinstance(order, dict) or not all(isinstance(o, dict) and "below" in o for o in order.values()):
        raise ValueError("its verdict is not one bench.py wrote")


def compare(prev, now):
    """Per-figure differences between two results files' `figures`, and whether the orderings
    against bpftrace are the same. Returns (rows, summary); a row is (key, before, now,
    difference, agrees, by what)."""
    rows = []
    for k, v in now["figures"].items():
        p = prev.get("figures", {}).get(k)
        rows.append((k, p, v, *agrees(k, p, v)))
    ebpfh = [r for r in rows if r[0].startswith("ebpfh") and r[4] is not None]
    order_now = now.get("verdict", {}).get("vs_bpftrace", {})
    order_prev = prev.get("verdict", {}).get("vs_bpftrace", {})
    same = [k for k in order_now if k in order_prev and order_now[k]["below"] == order_prev[k]["below"]]
    summary = {"tolerance": TOLERANCE, "abs_ns": ABS_NS, "points": POINTS,
               "ebpfh_figures": len(ebpfh), "ebpfh_agree": sum(1 for r in ebpfh if r[4]),
               "ebpfh_agree_absolute": sum(1 for r in ebpfh if r[5] == "absolute"),
               "ebpfh_disagree": [r[0] for r in ebpfh if not r[4]],
               "all_figures": sum(1 for r in rows if r[4] is not None),
               "all_agree": sum(1 for r in rows if r[4]),
               "orderings": len(order_now), "orderings_same": len(same),
               "orderings_changed": [k for k in order_now if k in order_prev and k not in same]}
    return rows, summary
