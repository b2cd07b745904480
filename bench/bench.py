#!/usr/bin/env python3
"""ebpfh benchmarks: what the monitor costs, side by side with no monitor, empty BPF programs and
the peers a sysadmin would pick (bpftrace, strace, auditd), on loops, process churn and two servers
(nginx, redis). Run it with `sudo make bench`; see README.md, "Benchmarks".

Every configuration runs its workloads in sessions, one per round (the order rotates each round);
past --rounds, up to --loop-rounds, the BPF configurations run sessions of their loops alone.
Each run is checked for disturbance (bench/measure.py: other processes' CPU, steal, a preempted
loop, foreign syscalls in the per-run average, foreign BPF programs); disturbed runs are retried,
a session's value is its fastest clean run, and figures are min/median/max over clean sessions.
A loop's or fork+exec's run is itself the median of its blocks (bench/blocks.h: 100 blocks of a
loop, every spawn), its mean kept beside it in results.json; under strace and auditd, whose cost
comes in stalls, the run's mean.
Extra rounds run until every verdict figure rests on MIN_CLEAN clean sessions. Loops run on
LOOP_CPU, the tracers' processes on TRACER_CPU. Loops are measured twice per session (after a
warm-up run): wall time with kernel.bpf_stats_enabled off, then the programs' own run time with it
on. A session's loops (and its other workloads, under a tracer that is not slow) are paired with
untraced runs of the same workload right before the tracer starts (loops: and right after it
stops): added ns per call (and % over untraced) is the median over sessions of each session's own
difference, so what drifts from one session to the next is in both sides of a pair.
`--breakdown` runs only the breakdown of ebpfh's cost per call (bench/breakdown.py); `--only
storm` runs only the anomaly storm (about a minute; its figures go to bench/storm.json), to try a
change to the monitor's output path without the whole run. Nothing here is a test: no number is asserted.

Configurations
  untraced          nothing attached
  empty_enter       an empty tp_btf/sys_enter program (bench/empty.bpf.c) - ebpfh's like-for-like
  empty_enter_exit  empty tp_btf/sys_enter + tp_btf/sys_exit programs
  ebpfh_training    ebpfh, fresh state, freezing disabled (--normal-factor 2^32-1 --normal-factor-den 1):
                    the loop's profile stays in training; its pairs are all known after the first
                    few calls, so this is training's steady state, not the (one-off) cost of learning
  ebpfh_frozen      ebpfh, fresh state, default freeze rule and a 7-day normal wait: the loop's
                    profile freezes within its first run and stays frozen
  ebpfh             ebpfh with the workloads' profiles trained to normal beforehand (--normal-wait 1s)
  bpftrace          bpftrace -e 'tracepoint:raw_syscalls:sys_enter { @[pid] = count(); }'
  strace            strace -f -c (ptrace) around each workload (a server: around the server)
  auditd            auditd, one rule: every syscall of the workload's processes (bench/peers.py)
"""

import argparse
import atexit
import fcntl
import glob
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

import breakdown
import measure
import peers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
OUT = os.path.join(TARGET, "bench")
EBPFH = os.path.join(TARGET, "release", "ebpfh")
REF = os.path.join(TARGET, "release", "examples", "bpf_reference")
PROFILES = os.path.join(TARGET, "release", "examples", "bench_profiles")
RESULTS = os.path.join(ROOT, "bench", "results.json")
BREAKDOWN = os.path.join(ROOT, "bench", "breakdown.json")
STORM = os.path.join(ROOT, "bench", "storm.json")

BPFTRACE_PROG = "tracepoint:raw_syscalls:sys_enter { @[pid] = count(); }"
# Not printing the map at exit: on a busy machine it holds every pid since the start.
BPFTRACE_END = " END { clear(@); }"
# The loops run on one CPU, the tracers' own processes (monitor, bpftrace, strace, auditd, the
# empty programs' loader) on the other: no migration, and a tracer waking up does not take the
# loop's CPU.
LOOP_CPU = "1"
TRACER_CPU = "0"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


# ---- building ------------------------------------------------------------------------------

def build():
    os.makedirs(OUT, exist_ok=True)
    for name in ["getppid_loop", "read_loop", "spawn", "storm"]:
        sh(["cc", "-O2", "-Wall", "-o", os.path.join(OUT, name), os.path.join(ROOT, "bench", name + ".c")])
    arch = {"x86_64": "x86", "aarch64": "arm64"}[platform.machine()]
    incs = sorted(glob.glob(os.path.join(TARGET, "release", "build", "libbpf-sys-*", "out", "include")))
    incs = [i for i in incs if os.path.exists(os.path.join(i, "bpf", "bpf_helpers.h"))]
    inc = incs[0] if incs else "/usr/include"
    clang = ["clang", "-O2", "-g", "-target", "bpf", f"-D__TARGET_ARCH_{arch}",
             "-I", os.path.join(ROOT, "vmlinux", arch), "-I", inc]
    sh([*clang, "-c", os.path.join(ROOT, "bench", "empty.bpf.c"), "-o", os.path.join(OUT, "empty.bpf.o")])
    make_macro_project(os.path.join(OUT, "macro"))
    for f in [EBPFH, REF, PROFILES]:
        if not os.access(f, os.X_OK):
            sys.exit(f"{f} is missing: run `make bench` (it builds it)")
    # What build.rs gives the monitor's own object, for the breakdown's cut-down copies of it.
    return clang + ["-I", os.path.join(ROOT, "bpf"), "-mcpu=v3", "-Wall", "-Werror"]


def make_macro_project(d, files=40):
    """A small C project: `files` translation units and a Makefile (each cc runs cc1, as, and
    the link collect2 and ld: ~125 execs of several executables per build)."""
    os.makedirs(d, exist_ok=True)
    for i in range(files):
        with open(os.path.join(d, f"u{i}.c"), "w") as f:
            f.write(f"""#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct item{i} {{ char name[32]; long value; struct item{i} *next; }};
static int cmp{i}(const void *a, const void *b)
{{
	const struct item{i} *x = a, *y = b;
	return (x->value > y->value) - (x->value < y->value);
}}
long unit{i}(long n)
{{
	struct item{i} *v = calloc(n, sizeof(*v));
	long s = 0;
	for (long k = 0; k < n; k++) {{
		snprintf(v[k].name, sizeof(v[k].name), "item-%ld-{i}", k * {i + 7} % 1000);
		v[k].value = (long)strlen(v[k].name) * (k ^ {i});
	}}
	qsort(v, n, sizeof(*v), cmp{i});
	for (long k = 0; k < n; k++)
		s += v[k].value;
	free(v);
	return s;
}}
""")
    with open(os.path.join(d, "main.c"), "w") as f:
        f.write("#include <stdio.h>\n")
        f.write("".join(f"long unit{i}(long);\n" for i in range(files)))
        f.write("int main(void)\n{\n\tlong s = 0;\n")
        f.write("".join(f"\ts += unit{i}(100);\n" for i in range(files)))
        f.write('\tprintf("%ld\\n", s);\n\treturn 0;\n}\n')
    objs = " ".join(f"u{i}.o" for i in range(files))
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write(f"OBJS = main.o {objs}\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n"
                "%.o: %.c\n\t$(CC) -O2 -c -o $@ $<\nclean:\n\trm -f prog *.o\n")


SHELL_JOB = ("i=0; while [ $i -lt 250 ]; do echo \"line $i\" | sed s/line/row/ | tr a-z A-Z | "
             "wc -c >/dev/null; i=$((i+1)); done")

# ---- tracers -------------------------------------------------------------------------------
# A tracer: start()/stop() around a session; wrap(argv) for the ones that run the workload
# (strace); preexec: what a workload's process does before exec (auditd marks it for its rule);
# pids(): its processes, whose CPU time belongs to the measurement; progs(): the processes
# holding its BPF programs.


class Untraced:
    name = "untraced"
    solo = True  # a loop under it should own its CPU (see measure.sample)
    slow = False
    preexec = None

    def start(self):
        pass

    def stop(self):
        pass

    def wrap(self, argv):
        return argv

    def pids(self):
        return []

    def progs(self):
        return []


class EmptyRef(Untraced):
    def __init__(self, name, progs):
        self.name, self.prog_names = name, progs

    def start(self):
        self.p = subprocess.Popen(["taskset", "-c", TRACER_CPU, REF, os.path.join(OUT, "empty.bpf.o"),
                                   *self.prog_names],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("attached"):
            raise RuntimeError(f"bpf_reference failed: {line!r}")

    def stop(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)

    def pids(self):
        return [self.p.pid]

    def progs(self):
        return [self.p.pid]


def block_value(tracer):
    """The parser of a loop's or spawn's output ("MEAN MEDIAN", see bench/blocks.h); both are kept
    in the sample. The figure is the median block, but under a slow tracer the mean: strace and
    auditd make the task wait for another process, so their cost comes in stalls (auditd's
    backlog drains) that the median of 100 blocks would leave out (auditd's getppid: 2,963 ns
    median, 51,570 mean)."""
    def parse(out, rec):
        rec["mean"], rec["median"] = (float(x) for x in out.split()[-2:])
        return rec["mean"] if tracer.slow else rec["median"]
    return parse


def read_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


class Ebpfh(Untraced):
    def __init__(self, name, state, args=(), fresh=False, log_path=None):
        self.name, self.state, self.args, self.fresh = name, state, list(args), fresh
        self.log = log_path or os.path.join(OUT, f"{name}.jsonl")

    def start(self):
        if self.fresh:
            shutil.rmtree(self.state, ignore_errors=True)
        if os.path.exists(self.log):
            os.unlink(self.log)
        self.stderr = open(os.path.join(OUT, f"{self.name}.stderr"), "w")
        # Its own run directory: a monitor already running elsewhere keeps /run/ebpfh.
        self.p = subprocess.Popen(["taskset", "-c", TRACER_CPU, EBPFH, "--headless", "--log", self.log,
                                   "--state-dir", self.state,
                                   "--run-dir", os.path.join(OUT, "run"), *self.args], stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.pid = self.p.pid
        wait_for(lambda: any(e["event"] == "monitor_started" for e in read_lines(self.log)),
                 60, f"{self.name} did not start (see {self.stderr.name})", self.p)

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        if self.p.wait(timeout=60) != 0:
            raise RuntimeError(f"{self.name} failed to stop cleanly (see {self.stderr.name})")
        self.stderr.close()

    def events(self, kind=None):
        return [e for e in read_lines(self.log) if kind is None or e["event"] == kind]

    def pids(self):
        return [self.pid]

    def progs(self):
        return [self.pid]


UNTRACED = Untraced()


class Bpftrace(Untraced):
    name = "bpftrace"

    def start(self):
        self.out = os.path.join(OUT, "bpftrace.out")
        self.p = subprocess.Popen(["taskset", "-c", TRACER_CPU, "bpftrace", "-e", BPFTRACE_PROG + BPFTRACE_END],
                                  stdout=open(self.out, "w"),
                                  stderr=subprocess.STDOUT)
        self.pid = self.p.pid
        wait_for(lambda: "Attaching" in open(self.out).read(), 60, "bpftrace did not start", self.p)
        # "Attaching 1 probe..." is printed just before the attach itself.
        time.sleep(1.0)

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=30)
            raise RuntimeError(f"bpftrace did not stop within 30 s of SIGINT (see {self.out})")

    def pids(self):
        return [self.pid]

    def progs(self):
        return [self.pid]


class Strace(Untraced):
    name = "strace"
    solo = False  # the loop waits for strace at every stop
    slow = True  # costs many times any disturbance: one run per workload, no retries

    def wrap(self, argv):
        return ["taskset", "-c", TRACER_CPU, "strace", "-f", "-c", "-o", "/dev/null", *argv]


def wait_for(cond, limit, what, proc=None):
    end = time.monotonic() + limit
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with {proc.returncode}")
        if time.monotonic() > end:
            raise RuntimeError(what)
        time.sleep(0.05)


# ---- workloads -----------------------------------------------------------------------------

WORKLOADS = {
    # name: (unit, description)
    "getppid": ("ns/call", "tight getppid() loop"),
    "read": ("ns/call", "64-byte read() from /dev/zero loop"),
    "churn": ("us/spawn", "fork+exec+wait of /bin/true"),
    "nginx": ("us/req", "nginx, 1 KiB file, ab -k -c 4"),
    "redis": ("us/req", "redis-server, redis-benchmark SET+GET -c 4"),
    "make": ("s", "make -j2 of a 41-file C project"),
    "shell": ("s", "shell loop: 250 x echo|sed|tr|wc"),
}
LOOPS = ["getppid", "read"]
ALL = list(WORKLOADS)
# Tracers that make a workload wait for another process run a fraction of the calls (loops) or
# requests (servers); figures are per call or per request, so they compare all the same.
SLOW_LOOP_SHARE = {"strace": 100, "auditd": 50}
SLOW_SERVER_SHARE = {"strace": 10, "auditd": 10}  # also fork+exec's spawns


class Workloads:
    """Runs one workload in a session and returns its samples (measure.sample records with a
    "value"); the session's value is the fastest clean sample: interference only ever adds time,
    and disturbed samples are retried (up to `extra` more runs) before the session goes without."""

    def __init__(self, quick):
        # At least ~0.2 s a run even untraced: /proc/stat counts in 10 ms ticks, and the
        # disturbance check needs a run long enough to see 0.15 of a CPU.
        self.n = {"getppid": 1_000_000 if quick else 1_500_000, "read": 600_000 if quick else 1_000_000}
        self.n_spawn = 300 if quick else 1000
        self.requests = {"nginx": 5000 if quick else 20_000, "redis": 10_000 if quick else 40_000}
        # Loops: the traced runs of a session, and as many untraced ones around them (half
        # before the tracer starts, half after it stops; see `session`). The others: a session's
        # runs, traced and untraced alike; its value is the fastest, and one run alone moved by
        # up to 40% between neighbours on an AMD host (redis 13.1..18.5 us/req untraced).
        self.want = {"getppid": 1 if quick else 2, "read": 1 if quick else 2, "churn": 1 if quick else 2,
                     "nginx": 1 if quick else 3, "redis": 1 if quick else 3, "make": 1 if quick else 3,
                     "shell": 1 if quick else 3}
        # Runs of each workload in one link of the chain phase (see `chain_phase`).
        self.chain_runs = 1 if quick else 3
        self.extra = 1 if quick else 2
        # Past this (time.monotonic()), disturbed runs are not retried: on a machine that is
        # busy throughout, retries only make the run longer.
        self.deadline = float("inf")
        self.retries_cut = 0

    def calls(self, tracer, w):
        return max(self.n[w] // SLOW_LOOP_SHARE.get(tracer.name, 1), 10_000)

    def runs(self, tracer, argv, parse, want, known=(), solo=False, calls=None, stats=False,
             traced=True):
        """`traced`: argv is what the tracer watches (wrapped, audited); a server's load
        generator is not (the server is)."""
        samples, clean = [], 0
        want, extra = (1, 0) if tracer.slow else (want, self.extra)
        while clean < want and len(samples) < want + extra:
            if len(samples) >= want and time.monotonic() > self.deadline:
                self.retries_cut += 1
                break
            out, rec = measure.sample(tracer.wrap(argv) if traced else argv,
                                      known=tracer.pids() + list(known), solo=solo and tracer.solo,
                                      progs=tracer.progs(), calls=calls, stats=stats,
                                      preexec=tracer.preexec if traced else None)
            rec["value"] = parse(out, rec)
            samples.append(rec)
            clean += not rec["disturbed"]
        return samples

    def loop(self, tracer, w, stats=False, want=None, calls=None):
        prog = os.path.join(OUT, {"getppid": "getppid_loop", "read": "read_loop"}[w])
        n = calls or self.calls(tracer, w)
        return self.runs(tracer, ["taskset", "-c", LOOP_CPU, prog, str(n)],
                         block_value(tracer), want or self.want[w], solo=True,
                         calls=n, stats=stats)

    def warm_up(self, tracer, w):
        """A tenth of a loop under a tracer just started, not measured: its first calls learn
        (training), fault in its maps and fill the caches."""
        prog = os.path.join(OUT, {"getppid": "getppid_loop", "read": "read_loop"}[w])
        sh(tracer.wrap(["taskset", "-c", LOOP_CPU, prog, str(max(self.calls(tracer, w) // 10, 1000))]),
           stdout=subprocess.DEVNULL)

    def baseline(self, w, half):
        """Untraced runs of a paired workload, the one side of a session's pairs: for a loop `half`
        of its runs (one side of the tracer's session), for a server one run (before it only)."""
        if w in LOOPS:
            return self.loop(UNTRACED, w, want=max(1, half))
        return getattr(self, w)(UNTRACED)

    def getppid(self, tracer):
        return self.loop(tracer, "getppid")

    def read(self, tracer):
        return self.loop(tracer, "read")

    # The process and server workloads: `want` clean runs (default: self.want's).
    def churn(self, tracer, want=None):
        spawn = os.path.join(OUT, "spawn")
        n = max(self.n_spawn // SLOW_SERVER_SHARE.get(tracer.name, 1), 50)
        return self.runs(tracer, ["taskset", "-c", LOOP_CPU, spawn, str(n), "/bin/true"],
                         block_value(tracer), want or self.want["churn"])

    def make(self, tracer, want=None):
        d = os.path.join(OUT, "macro")
        # -B: every run (a retry too) rebuilds everything.
        return self.runs(tracer, ["make", "-s", "-B", "-j2", "-C", d],
                         lambda out, rec: rec["wall_s"], want or self.want["make"])

    def shell(self, tracer, want=None):
        return self.runs(tracer, ["/bin/sh", "-c", SHELL_JOB], lambda out, rec: rec["wall_s"],
                         want or self.want["shell"])

    def server(self, tracer, srv, w, want=None):
        """One server instance for the session, traced (strace wraps it, auditd's rule covers
        it); the load generator runs beside it. Value: the generator's wall time per request."""
        srv.start(tracer.wrap, tracer.preexec)
        try:
            def parse(out, rec):
                srv.check(out)
                return rec["wall_s"] / srv.requests * 1e6
            return self.runs(tracer, srv.client(), parse, want or self.want[w], known=srv.pids(),
                             traced=False)
        finally:
            srv.stop()

    def server_requests(self, tracer, w):
        return max(self.requests[w] // SLOW_SERVER_SHARE.get(tracer.name, 1), 1000)

    def nginx(self, tracer, want=None):
        return self.server(tracer, peers.Nginx(OUT, self.server_requests(tracer, "nginx")), "nginx", want)

    def redis(self, tracer, want=None):
        return self.server(tracer, peers.Redis(OUT, self.server_requests(tracer, "redis")), "redis", want)


def foreign_bpf(ours=()):
    """Tracing programs attached that are not ours (prog ids `ours`): someone else's (another
    monitor, a test run, a bpftrace), and they would tax every measurement. Links (tp_btf,
    fentry, raw tracepoints) and perf-event attachments (tracepoints, kprobes: bpftrace's)."""
    try:
        links = json.loads(sh(["bpftool", "-j", "link", "show"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL).stdout)
        perf = json.loads(sh(["bpftool", "-j", "perf", "show"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout or "[]")
        progs = {p["id"]: p.get("name", "?") for p in
                 json.loads(sh(["bpftool", "-j", "prog", "show"], stdout=subprocess.PIPE).stdout)}
    except Exception:
        return []
    ids = {l.get("prog_id") for l in links
           if l.get("type") in ("tracing", "raw_tracepoint", "perf_event", "kprobe_multi")}
    ids |= {p.get("prog_id") for p in perf}
    return sorted(progs.get(i, "?") for i in ids - set(ours) if i is not None)


def wait_no_foreign(limit=5):
    """Waits (a while) until no one else's tracing programs are attached; returns those left."""
    end = time.monotonic() + limit
    while True:
        found = foreign_bpf()
        if not found or time.monotonic() > end:
            return found
        time.sleep(1)


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


# ---- phases --------------------------------------------------------------------------------

def stat_key(path):
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def train_to_normal(mon, work, progs, extra_runs, limit=90):
    """Runs `progs` (argv lists) until every one of their profiles has a normal_started line."""
    want = {stat_key(os.path.realpath(p[0])): p for p in progs}
    for _ in range(20):
        for p in progs:
            sh(p, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for run in extra_runs:
        run()
    end = time.monotonic() + limit
    while True:
        done = {e["profile"] for e in mon.events("normal_started")}
        missing = [p for k, p in want.items() if k not in done]
        if not missing:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"no normal_started for {[m[0] for m in missing]}")
        for p in missing:
            sh(p, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)


def real_programs():
    """The programs whose profiles the per-profile memory figures describe."""
    sh(["ls", "-la", "/usr/bin"], stdout=subprocess.DEVNULL)
    sh(["bash", "-c", "for f in /etc/*.conf; do [ -r \"$f\" ] && echo \"$f\"; done | sort | head -3"],
       stdout=subprocess.DEVNULL)
    sh(["python3", "-c", "import json, os; print(json.dumps(sorted(os.listdir('/etc'))[:3]))"],
       stdout=subprocess.DEVNULL)


def profile_rows(state):
    out = sh([PROFILES, state], stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def map_memory(pid):
    """Sum of memlock over the BPF map descriptors a process holds (what bpftool map shows)."""
    total, maps = 0, 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            info = open(f"/proc/{pid}/fdinfo/{fd}").read()
        except OSError:
            continue
        if "map_type:" in info:
            for line in info.splitlines():
                if line.startswith("memlock:"):
                    total += int(line.split()[1])
                    maps += 1
    return total, maps


def proc_status(pid):
    st = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            st[k] = int(v.split()[0]) * 1024
    return st


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def storm_phase(work, n, rate=100_000, seconds=10):
    """The monitor under an anomaly storm (bench/storm.c, trained to normal; every write is then
    an anomaly). Four runs, each from the same trained state:

      burst      n writes as fast as the kernel takes them, default settings (4 MiB ring,
                 --anomaly-lines 5): what is lost when the kernel outruns the monitor
      sustained  `rate` writes/s for `seconds` s, default settings: nothing may be lost
      file/pipe  n writes with every anomaly line kept (--anomaly-lines 1000000000) and a ring that
                 holds them all, the log a file or a pipe (to `cat`): the monitor's line rate

    Every anomalous call the kernel counts in the profile must be an anomaly line (or, beyond the
    line bound, counted in an incident line) or counted as lost in an events_lost line."""
    storm = os.path.join(OUT, "storm")
    trained = os.path.join(OUT, "state-storm-trained")
    state = os.path.join(OUT, "state-storm")
    # The default tolerize limit: a storm's LFC passes it, so its first incident is an alarm;
    # --anomaly-limit keeps the profile normal throughout. An incident cut at 100,000 calls is
    # followed by one that only repeats the (now pending) pairs: quiet, so its line is written
    # only with --log-quiet, which the accounting below needs (its anomalies keep no lines).
    flags = ["--normal-wait", "1s", "--anomaly-limit", "1000000000", "--log-quiet"]
    # Its own run directory, as Ebpfh's: a monitor already running elsewhere keeps /run/ebpfh.
    run_dir = ["--run-dir", os.path.join(OUT, "run")]
    every_line = ["--anomaly-lines", "1000000000", "--ring-bytes", str(256 << 20)]
    key = stat_key(storm)

    def kernel_anomalies(d):
        return next((r for r in profile_rows(d) if r["profile"] == key), {}).get("anomalies") or 0

    # As in the sessions: the storm (and the pipe's reader) on LOOP_CPU, the monitor on
    # TRACER_CPU, so the line rate is the monitor's with a CPU of its own, not how the scheduler
    # happened to share two CPUs among three busy processes.
    on_loop_cpu, on_tracer_cpu = ["taskset", "-c", LOOP_CPU], ["taskset", "-c", TRACER_CPU]
    untraced = [float(sh([*on_loop_cpu, storm, str(n)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True).stderr.split()[0]) for _ in range(3)]
    mon = Ebpfh("ebpfh_storm_training", trained, flags, fresh=True)
    mon.start()
    try:
        train_to_normal(mon, work, [[storm]], [])
    finally:
        mon.stop()
    os.unlink(mon.log)

    def run(name, argv, extra, pipe=False):
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(trained, state)
        before = kernel_anomalies(state)
        log_path = os.path.join(OUT, f"ebpfh_storm_{name}.jsonl")
        if os.path.exists(log_path):
            os.unlink(log_path)
        stderr = open(os.path.join(OUT, f"ebpfh_storm_{name}.stderr"), "w")
        cat = None
        if pipe:
            cat = subprocess.Popen([*on_loop_cpu, "cat"], stdin=subprocess.PIPE, stdout=open(log_path, "w"))
            m = subprocess.Popen([*on_tracer_cpu, EBPFH, "--headless", "--log", "-", "--state-dir", state, *run_dir,
                                  *flags, *extra], stdout=cat.stdin, stderr=stderr)
            cat.stdin.close()
        else:
            m = subprocess.Popen([*on_tracer_cpu, EBPFH, "--headless", "--log", log_path, "--state-dir", state,
                                  *run_dir, *flags, *extra], stdout=subprocess.DEVNULL, stderr=stderr)
        # The storm's lines: its pid under its own profile (before its exec, the pid is Python's).
        count = {"lines": 0, "anomaly_lines": 0, "in_incidents": 0, "lost": 0, "exited": False,
                 # Where in the log the storm's last line ends, and how many lines reach there.
                 "read": 0, "last_end": 0, "lines_to_last": 0}
        pending = [b""]

        def read_new(f):
            """Counts the lines added to the log since the last call (without parsing every line:
            a million lines of JSON take Python a while); True if the storm's lines grew."""
            data = pending[0] + f.read()
            *whole, pending[0] = data.split(b"\n")
            grew = False
            for raw in whole:
                count["lines"] += 1
                count["read"] += len(raw) + 1
                head = raw[:100]
                mine = False
                if b'"event":"anomaly"' in head:
                    mine = all(s in raw for s in ours)
                    count["anomaly_lines"] += mine
                elif b'"event":"incident"' in head and all(s in raw for s in ours):
                    e = json.loads(raw)
                    count["in_incidents"] += e["anomalous_calls"]
                    count["exited"] |= e["reason"] == "exit"
                    mine = True
                elif b'"event":"events_lost"' in head:
                    count["lost"] += json.loads(raw)["lost"].get("anomaly", 0)
                if mine:
                    count["last_end"], count["lines_to_last"] = count["read"], count["lines"]
                    grew = True
            return grew

        try:
            wait_for(lambda: os.path.exists(log_path) and b'"monitor_started"' in open(log_path, "rb").read(),
                     60, f"the storm monitor did not start (see {stderr.name})", m)
            f = open(log_path, "rb")
            f.seek(0, os.SEEK_END)
            start_size = f.tell()
            # When the log reached each size: sampled every millisecond by a thread that only
            # asks the size. The drain ends when the log holds the storm's last line, not at its
            # mtime, which the host's other lines (this harness's own anomalies among them)
            # move on; and parsing the log as it grows would take the storm's CPU.
            sizes, sampling = [], [True]

            def sample_sizes():
                fd = f.fileno()
                while sampling[0]:
                    sizes.append((time.time(), os.fstat(fd).st_size))
                    time.sleep(0.001)

            # Parsing below holds the interpreter lock: let the sampler in every 0.5 ms (not 5).
            switch = sys.getswitchinterval()
            sys.setswitchinterval(0.0005)
            sampler = threading.Thread(target=sample_sizes, daemon=True)
            sampler.start()
            cpu0 = cpu_seconds(m.pid)
            t0 = time.monotonic()
            t0_wall = time.time()
            # taskset execs the storm: the pid is the storm's.
            p = subprocess.Popen([*on_loop_cpu, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True)
            ours = (f'"pid":{p.pid},'.encode(), f'"profile":"{key}"'.encode())
            ns_per_write, run_s = (float(x) for x in p.communicate()[1].split())
            # Drained when the storm's exit ends its incident, or (its exit's event lost) when no
            # line of the storm came for 2 s. The host's other programs may go on writing lines.
            last_change = time.monotonic()
            while not count["exited"] and time.monotonic() - last_change < 2.0 \
                    and time.monotonic() - t0 < 300:
                if read_new(f):
                    last_change = time.monotonic()
                time.sleep(0.02)
            sampling[0] = False
            sampler.join()
            sys.setswitchinterval(switch)
            end = start_size + count["last_end"]
            t_drained = next((t for t, size in sizes if size >= end), time.time()) - t0_wall
            lines_drained = count["lines_to_last"]
            cpu = cpu_seconds(m.pid) - cpu0
            rss = proc_status(m.pid)
            time.sleep(1.2)  # one more loss check (every second)
        finally:
            m.send_signal(signal.SIGINT)
            rc = m.wait(timeout=60)
            stderr.close()
            if cat:
                cat.wait(timeout=60)
        if rc != 0:
            raise RuntimeError(f"the storm monitor failed to stop cleanly (see {stderr.name})")
        read_new(f)
        f.close()
        kernel = kernel_anomalies(state) - before
        if kernel <= 0:
            raise RuntimeError(f"storm {name}: the kernel counted no anomalies, so the storm's trained "
                               "profile was not in use (see the monitor's stderr)")
        os.unlink(log_path)
        in_incidents, lost = count["in_incidents"], count["lost"]
        return {
            "writes": int(argv[1]),
            "rate_asked": int(argv[2]) if len(argv) > 2 else None,
            "storm_seconds": run_s,
            "ns_per_write": ns_per_write,
            "kernel_anomalies": kernel,
            "kernel_anomalies_per_s": round(kernel / run_s) if run_s > 0 else None,
            "anomaly_lines": count["anomaly_lines"],
            "anomalies_in_incident_lines": in_incidents,
            "lost": lost,
            # events_lost counts the whole host's losses, not only the storm's.
            "accounted": in_incidents <= kernel <= in_incidents + lost,
            "lines": lines_drained,
            "lines_per_s": round(lines_drained / t_drained) if t_drained > 0 else None,
            "seconds_until_log_drained": round(t_drained, 2),
            "monitor_cpu_seconds": round(cpu, 2),
            # What the monitor could write if nothing else ran on its CPU.
            "lines_per_monitor_cpu_s": round(lines_drained / cpu) if cpu > 0 else None,
            "monitor_rss_bytes_after": rss.get("VmRSS"),
            "monitor_rss_peak_bytes": rss.get("VmHWM"),
            "settings": " ".join(flags + extra) + ("" if extra else ", 4 MiB ring, --anomaly-lines 5")
                        + (", log to a pipe" if pipe else ""),
        }

    res = {}
    # This loop counts the log's lines while the monitor writes them: on the monitor's CPU it
    # would take the CPU whose rate is measured.
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(LOOP_CPU)})
    try:
        for name, argv, extra, pipe in [
            ("burst", [storm, str(n)], [], False),
            ("sustained", [storm, str(rate * seconds), str(rate)], [], False),
            ("file", [storm, str(n)], every_line, False),
            ("pipe", [storm, str(n)], every_line, True),
        ]:
            log(f"  storm {name}: {' '.join(os.path.basename(a) for a in argv)}")
            res[name] = r = run(name, argv, extra, pipe)
            log(f"  storm {name}: {r['kernel_anomalies']} anomalies in {r['storm_seconds']} s "
                f"({r['kernel_anomalies_per_s']}/s), lost {r['lost']}, accounted {r['accounted']}, "
                f"{r['lines']} lines, {r['lines_per_s']} lines/s")
    finally:
        os.sched_setaffinity(0, cpus)
    shutil.rmtree(state, ignore_errors=True)
    b = res["burst"]
    # The burst's figures also under the names the summary prints.
    return {
        **res,
        "ns_per_write_untraced": statistics.median(untraced),
        "writes": b["writes"],
        "storm_seconds": b["storm_seconds"],
        "anomalies_per_s_generated": b["kernel_anomalies_per_s"],
        "delivered": b["anomalies_in_incident_lines"],
        "lost": b["lost"],
        "kernel_count": b["kernel_anomalies"],
        "delivered_per_s": res["file"]["lines_per_s"],
    }


# Seconds to wait after the monitor starts or stops before the next run: loading and freeing
# its programs and maps leaves the kernel work (verification, RCU callbacks) that a run right
# after it pays for.
SETTLE_S = 1.0


# The workloads of the chain phase: each a second at most, so an untraced link, a link under a
# monitor just started and another untraced link fit in the time the machine holds one speed.
CHAINED = ["churn", "nginx", "redis", "make", "shell"]


def chain_phase(work, normal_state, pairs):
    """The process and server workloads, ebpfh (normal mode, the workloads' trained state) against
    untraced, each as a chain of its own of links U T U T ... U: a link runs the workload
    work.chain_runs times (a disturbed run is retried), T under a monitor started for it, and its
    value is the link's fastest clean run, as a session's is: interference only ever adds time,
    and single runs in one untraced block moved by up to 40% (redis 13.1..18.5 us per request,
    fork+exec 604..860 us per spawn) while each block's fastest moved by 5%. T's value is compared
    with the mean of the untraced links just before and after it, which cancels the machine's
    drift over those seconds. A chain per workload keeps the three links within seconds: on an AMD
    host every workload of a link ran 10-30% slower or faster together from one link to the next,
    so a link of all five put the two sides of a comparison too far apart. Paired within a session
    instead, the two sides were a minute apart: consecutive untraced runs of fork+exec differed by
    up to 25% in their mean spawn, make's by 20% between sessions, and in 4 of 4 sessions make,
    nginx and the shell loop ran faster under ebpfh than in the untraced runs at the session's
    start. A workload's figure is the median of its `pairs` % differences over those whose three
    links had a clean run."""

    def link(tracer, w):
        # Each link starts after SETTLE_S of rest, traced or not: a run right after the last
        # link's runs and one after a second of idling start on a machine in another state.
        time.sleep(SETTLE_S)
        got, monitor_cpu = [], 0.0
        for _ in range(work.chain_runs):
            if w == "churn":
                # spawn's own first spawns (page faults, a cold exec path) are not the figure.
                sh(["taskset", "-c", LOOP_CPU, os.path.join(OUT, "spawn"), "20", "/bin/true"],
                   stdout=subprocess.DEVNULL)
            cpu0 = cpu_seconds(tracer.pid) if isinstance(tracer, Ebpfh) else 0.0
            got += getattr(work, w)(tracer, want=1)
            if isinstance(tracer, Ebpfh):
                monitor_cpu += cpu_seconds(tracer.pid) - cpu0
        clean = [x for x in got if not x["disturbed"]]
        r = dict(min(clean or got, key=lambda x: x["value"]))
        r.update(disturbed=not clean, runs=len(got), clean_runs=len(clean), values=[x["value"] for x in got])
        if isinstance(tracer, Ebpfh) and w == "churn":
            # The monitor's CPU per spawn: it gets no event for an exec of a known program.
            r["monitor_cpu_us_per_spawn"] = round(monitor_cpu * 1e6 / (len(got) * work.n_spawn), 2)
        return r

    def traced(w):
        mon = Ebpfh("ebpfh_chain", normal_state, ["--normal-wait", "1s"])
        mon.start()
        try:
            r = link(mon, w)
        finally:
            mon.stop()
        # The trained workloads should make none: a figure with anomalies measured them.
        anomalies = mon.events("anomaly")
        r["anomaly_lines"] = len(anomalies)
        r["anomaly_comms"] = sorted({e.get("comm", "?") for e in anomalies})
        return r

    out = {"links": {}, "runs_per_link": work.chain_runs, "spawns_per_run": work.n_spawn,
           "pct_over_untraced": {}, "clean_pairs": {}}
    for w in CHAINED:
        links, before = [], link(UNTRACED, w)
        for _ in range(pairs):
            t = traced(w)
            after = link(UNTRACED, w)
            base = (before["value"] + after["value"]) / 2
            links.append({"untraced_before": before, "ebpfh": t, "untraced_after": after,
                          "pct": round((t["value"] / base - 1) * 100, 1),
                          "clean": not (t["disturbed"] or before["disturbed"] or after["disturbed"])})
            before = after
        lines = sum(x["ebpfh"]["anomaly_lines"] for x in links)
        comms = sorted({c for x in links for c in x["ebpfh"]["anomaly_comms"]})
        log(f"  {w}: " + ", ".join(f"{x['pct']:+.1f}%{'' if x['clean'] else ' (disturbed)'}" for x in links)
            + (f"; {lines} anomaly lines ({', '.join(comms)})" if lines else ""))
        clean = [x["pct"] for x in links if x["clean"]]
        out["links"][w] = links
        out["clean_pairs"][w] = len(clean)
        out["pct_over_untraced"][w] = {**measure.spread(clean or [x["pct"] for x in links]),
                                       "n": len(clean), "disturbed": not clean}
    out["monitor_cpu_us_per_spawn"] = statistics.median(
        x["ebpfh"]["monitor_cpu_us_per_spawn"] for x in out["links"]["churn"])
    out["anomaly_lines"] = sum(x["ebpfh"]["anomaly_lines"] for ls in out["links"].values() for x in ls)
    return out


# ---- main ----------------------------------------------------------------------------------

# Which workloads run under which configuration (see the module docstring).
PROCESS = ["churn", "nginx", "redis", "make", "shell"]
# Workloads whose added cost is the median of per-session differences from untraced runs right
# around the session (loops under every tracer; the rest under the tracers that are not slow: a
# ~1 s workload run minutes after the untraced session moves with the machine by more than a
# tracer adds).
PAIRED = LOOPS + PROCESS


def is_paired(tracer, w):
    """Whether a session of tracer pairs workload w with untraced runs (see PAIRED)."""
    return tracer.name != "untraced" and w in PAIRED and (w in LOOPS or not tracer.slow)


EBPFH_MODES = {"training": "ebpfh_training", "frozen": "ebpfh_frozen", "normal": "ebpfh"}
BPF_CONFIGS = ["empty_enter", "empty_enter_exit", "ebpfh_training", "ebpfh_frozen", "ebpfh", "bpftrace"]
# The verdict needs this many clean sessions behind each of its figures (after extra rounds;
# --quick: 2, all it has).
MIN_CLEAN = 3
VERDICT_CONFIGS = ["untraced", "ebpfh_training", "ebpfh_frozen", "ebpfh", "bpftrace"]
# The loop rounds' configurations: the verdict's and ebpfh's like-for-like reference.
LOOP_ROUND_CONFIGS = ["empty_enter", "ebpfh_training", "ebpfh_frozen", "ebpfh", "bpftrace"]


def configurations(normal_state):
    monitor_args = ["--normal-wait", "1s"]
    return [
        (Untraced(), ALL),
        (EmptyRef("empty_enter", ["empty_sys_enter"]), LOOPS + ["churn"]),
        (EmptyRef("empty_enter_exit", []), LOOPS),
        (Ebpfh("ebpfh_training", os.path.join(OUT, "state-training"),
               ["--normal-factor", "4294967295", "--normal-factor-den", "1"], fresh=True), LOOPS),
        (Ebpfh("ebpfh_frozen", os.path.join(OUT, "state-frozen"), ["--normal-wait", "7d"], fresh=True), LOOPS),
        (Ebpfh("ebpfh", normal_state, monitor_args), ALL),
        (Bpftrace(), ALL),
        (Strace(), ALL),
        # make and the shell loop take minutes under auditd's every-syscall rule.
        (peers.Auditd(), LOOPS + ["churn", "nginx", "redis"]),
    ]


def loop_configs(configs):
    """The loop rounds' sessions: the BPF configurations, their loops only. A loop's added ns is
    a difference of two wall times whose sessions moved by 10-20% here (a whole session runs
    slower, its programs' ns per run too), so its median wants more sessions than the rest,
    and a loop session costs seconds where a full one costs a minute."""
    return [(tracer, [w for w in ws if w in LOOPS]) for tracer, ws in configs
            if tracer.name in LOOP_ROUND_CONFIGS]


def session(work, tracer, ws, rnd, memory, bpftrace_rss):
    """One configuration in one round: the untraced side of its pairs, start it, warm up, run its
    workloads (loops twice: wall time with bpf_stats off, then the programs' own time with it on),
    stop it, the loops' untraced side again."""
    rec = {"round": rnd, "config": tracer.name, "load_before": loadavg(), "work": {}}
    rec["foreign_bpf"] = wait_no_foreign()
    paired = [w for w in ws if is_paired(tracer, w)]
    # The untraced side of the session's pairs, right before the tracer starts (and, for the
    # loops, right after it stops): what drifts between sessions is in both sides of a pair.
    base = {w: work.baseline(w, work.want[w] // 2 if w in LOOPS else 1) for w in paired}
    tracer.start()
    try:
        ours = set(measure.prog_counters(tracer.progs()))
        rec["foreign_bpf"] += foreign_bpf(ours)
        if not tracer.slow:
            for w in ws:
                if w in LOOPS:
                    work.warm_up(tracer, w)
        for w in ws:
            rec["work"][w] = {"wall": getattr(work, w)(tracer)}
            if w in LOOPS and tracer.progs():
                with measure.BpfStats():
                    rec["work"][w]["bpf_stats"] = work.loop(tracer, w, stats=True)
        if tracer.name == "ebpfh":
            st = proc_status(tracer.pid)
            memory["monitor_rss_bytes"].append(st["VmRSS"])
            memory["monitor_rss_peak_bytes"].append(st["VmHWM"])
            memory["kernel_map_bytes"], memory["kernel_maps"] = map_memory(tracer.pid)
        if tracer.name == "bpftrace":
            bpftrace_rss.append(proc_status(tracer.pid)["VmRSS"])
        if tracer.name == "auditd":
            rec["audit_lost"] = tracer.lost()
        if isinstance(tracer, Ebpfh):
            # A loop's calls should be clean in every mode: anomalies would make its ns per run
            # the cost of reporting them, not of the algorithm.
            rec["loop_anomaly_lines"] = sum(1 for e in tracer.events("anomaly")
                                            if e.get("comm") in ("getppid_loop", "read_loop"))
        rec["foreign_bpf"] += foreign_bpf(ours)
    finally:
        tracer.stop()
    for w in paired:
        if w in LOOPS:
            base[w] += work.baseline(w, work.want[w] - work.want[w] // 2)
        rec["work"].setdefault(w, {})["base"] = base[w]
    rec["load_after"] = loadavg()
    # Someone else's tracing programs (another monitor, a test run) tax every call: the whole
    # session is kept in the raw data but left out.
    rec["contaminated"] = bool(rec["foreign_bpf"])
    for w, kinds in rec["work"].items():
        for kind, samples in kinds.items():
            key = "ns_per_call_all" if kind == "bpf_stats" else "value"
            clean = [s[key] for s in samples if not s["disturbed"] and s.get(key) is not None]
            every = [s[key] for s in samples if s.get(key) is not None]
            rec["work"][w][kind] = {"samples": samples,
                                    "value": None if rec["contaminated"] or not clean else min(clean),
                                    # What a figure falls back on when no session was clean.
                                    "value_disturbed": min(every) if every else None}
    return rec


def session_values(sessions, config, w, kind="wall", field="value"):
    return [s["work"][w][kind][field] for s in sessions
            if s["config"] == config and w in s["work"] and kind in s["work"][w]
            and s["work"][w][kind][field] is not None]


def figure_values(sessions, config, w, kind="wall"):
    """The clean sessions' values, or, when there is none, every session's fastest run, marked
    disturbed (the table shows them with a *; the verdict counts them as 0 clean sessions)."""
    vals = session_values(sessions, config, w, kind)
    if vals:
        return vals, False
    return session_values(sessions, config, w, kind, "value_disturbed"), True


def session_pairs(sessions, config, w, field="value"):
    """(traced, untraced) per session of config: its wall value and its own baseline's."""
    return [(s["work"][w]["wall"][field], s["work"][w]["base"][field]) for s in sessions
            if s["config"] == config and "base" in s["work"].get(w, {}) and "wall" in s["work"][w]]


def pair_values(sessions, config, w):
    """The clean sessions' pairs, or, when no session has a clean pair, every session's fastest
    runs, marked disturbed (as figure_values)."""
    pairs = [p for p in session_pairs(sessions, config, w) if None not in p]
    if pairs:
        return pairs, False
    return session_pairs(sessions, config, w, "value_disturbed"), True


def paired_spread(sessions, config, w, pct=False):
    pairs, disturbed = pair_values(sessions, config, w)
    s = measure.paired(pairs, pct=pct)
    if s is not None and disturbed:
        s["disturbed"], s["n"] = True, 0
    return s


def spread_of(vals_flag):
    vals, disturbed = vals_flag
    s = measure.spread(vals)
    if s is not None and disturbed:
        s["disturbed"], s["n"] = True, 0
    return s


def min_value(v, kind):
    return "-" if v["value_disturbed"] is None else f"{v['value_disturbed']:.1f}"


def lacking(sessions, configs):
    """The configurations some verdict figure of which has fewer than MIN_CLEAN clean sessions."""
    out = []
    for tracer, ws in configs:
        if tracer.name not in VERDICT_CONFIGS:
            continue
        for w in ws:
            if w not in LOOPS + ["churn"]:
                continue
            kinds = ["wall"] + (["bpf_stats"] if tracer.name in BPF_CONFIGS and w in LOOPS else [])
            pairs, disturbed = pair_values(sessions, tracer.name, w)
            # A paired figure rests on sessions whose both sides were clean.
            if is_paired(tracer, w) and (disturbed or len(pairs) < MIN_CLEAN):
                out.append((tracer, ws))
                break
            if any(len(session_values(sessions, tracer.name, w, k)) < MIN_CLEAN for k in kinds):
                out.append((tracer, ws))
                break
    return out


LOCK = None
# A full run takes 18-23 minutes on a 2-core AMD host; past the budget a busy machine would only
# make it longer.
BUDGET_S, QUICK_BUDGET_S = 1500, 200


def hold_lock():
    """One bench run at a time: two would measure each other, and they share OUT's binaries and
    states (a second run rebuilds them under the first). Held until the process exits."""
    os.makedirs(OUT, exist_ok=True)
    global LOCK
    LOCK = open(os.path.join(OUT, ".lock"), "w")
    try:
        fcntl.flock(LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"bench: another bench run holds {LOCK.name}; wait for it to end")


def main():
    global MIN_CLEAN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--loop-rounds", type=int,
                    help="rounds in all, counting --rounds, of the loops under ebpfh's modes, "
                         "bpftrace and the empty sys_enter program (the rounds past --rounds run "
                         "only those; default 16, --quick 2)")
    ap.add_argument("--extra-rounds", type=int, default=3,
                    help="rounds run, for the configurations that lack them, until every verdict "
                         f"figure rests on {MIN_CLEAN} clean sessions")
    ap.add_argument("--quick", action="store_true", help="small counts, 2 rounds (to try the harness)")
    ap.add_argument("--output", default=RESULTS)
    ap.add_argument("--compare", metavar="RESULTS_JSON",
                    help="also print every figure's difference from an earlier run's results file")
    ap.add_argument("--storm-writes", type=int, default=200_000)
    ap.add_argument("--breakdown", action="store_true",
                    help="only the breakdown of ebpfh's cost per call (bench/breakdown.py); "
                         f"writes {os.path.relpath(BREAKDOWN, ROOT)}")
    ap.add_argument("--budget", type=int, metavar="SECONDS",
                    help="after this long, no more retries or extra rounds "
                         f"(default {BUDGET_S}, --quick {QUICK_BUDGET_S})")
    ap.add_argument("--only", choices=["storm"],
                    help="only this phase: storm, the anomaly storm (--storm-writes; --quick: 20,000); "
                         f"writes {os.path.relpath(STORM, ROOT)}")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: loading BPF programs needs root (sudo make bench)")
    hold_lock()
    stats_off = measure.StatsOffForRun()
    stats_off.__enter__()
    atexit.register(stats_off.__exit__)
    why = peers.AUDIT_TAX.hold()
    if why:
        log(f"WARNING: {why}")
    atexit.register(peers.AUDIT_TAX.release)
    prev = None
    if args.compare:
        try:
            with open(args.compare) as f:
                prev = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit(f"bench: cannot read {args.compare} ({e}); give the results.json of an earlier run")
        try:
            measure.comparable(prev)
        except ValueError as e:
            sys.exit(f"bench: cannot compare with {args.compare}: {e}; give the results.json of an earlier run")
    if args.quick:
        args.rounds, args.extra_rounds = 2, 0
        args.storm_writes = 20_000
        MIN_CLEAN = 2  # both of the quick run's rounds
    if args.loop_rounds is None:
        args.loop_rounds = 2 if args.quick else 16
    if args.budget is None:
        args.budget = QUICK_BUDGET_S if args.quick else BUDGET_S
    if not os.path.exists("/sys/kernel/tracing/events"):
        # bpftrace's tracepoints need tracefs.
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=False)
    started = time.monotonic()
    clang = build()
    work = Workloads(args.quick)
    work.deadline = started + args.budget
    normal_state = os.path.join(OUT, "state-normal")
    loop_bins = [os.path.join(OUT, "getppid_loop"), os.path.join(OUT, "read_loop")]
    spawn_bin = os.path.join(OUT, "spawn")
    # spawn's loop (clone, wait4, ...) fills its whole window only after a few spawns: trained
    # on fewer, every spawn of a measured run would be an anomaly, and the run an anomaly storm.
    trained = [[loop_bins[0], "1000"], [loop_bins[1], "1000"], [spawn_bin, "20", "/bin/true"], ["/bin/true"]]
    if args.breakdown:
        if foreign_bpf():
            log(f"WARNING: other tracing BPF programs are attached ({', '.join(foreign_bpf())}): they "
                "slow every call down; each program's own ns per run is measured all the same")

        res = breakdown.run({
            "Ebpfh": Ebpfh, "train": lambda mon: train_to_normal(mon, work, trained, []),
            "warm_up": lambda w: work.warm_up(UNTRACED, w), "ref": REF,
            "empty_obj": os.path.join(OUT, "empty.bpf.o"), "clang": clang,
            "src": os.path.join(ROOT, "bpf", "ebpfh.bpf.c"), "out": OUT, "calls": work.n,
            "loop_cpu": LOOP_CPU, "tracer_cpu": TRACER_CPU, "log": log}, args.quick)
        res.update({"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "quick": args.quick, "loop_counts": work.n, "seconds": round(time.monotonic() - started)})
        with open(BREAKDOWN, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        breakdown.print_breakdown(res)
        print(f"\nfull results: {BREAKDOWN} ({res['seconds']} s)")
        return
    if args.only == "storm":
        log(f"anomaly storm: {args.storm_writes} anomalous writes")
        storm = storm_phase(work, args.storm_writes)
        res = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "loadavg": loadavg(), "anomaly_storm": storm, "seconds": round(time.monotonic() - started)}
        with open(STORM, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        print_storm(storm)
        print(f"\nfull results: {STORM} ({res['seconds']} s)")
        return
    foreign = foreign_bpf()
    if foreign:
        log(f"WARNING: other tracing BPF programs are attached ({', '.join(foreign)}): they tax every run")
    if loadavg() > 0.5:
        log(f"WARNING: load average {loadavg()}: something else is running, so the numbers will be noisy")

    # Phase 1: train the workloads' profiles to normal (and run real programs for the memory figures).
    log("training the workloads' profiles to normal (--normal-wait 1s)")
    mon = Ebpfh("ebpfh_train", normal_state, ["--normal-wait", "1s"], fresh=True)
    mon.start()
    try:
        train_to_normal(mon, work, trained,
                        [lambda: work.make(Untraced()), lambda: work.shell(Untraced()), real_programs])
        for _ in range(2):
            work.make(Untraced())
            work.shell(Untraced())
            work.nginx(Untraced())
            work.redis(Untraced())
            real_programs()
    finally:
        mon.stop()

    configs = configurations(normal_state)
    sessions = []
    memory = {"monitor_rss_bytes": [], "monitor_rss_peak_bytes": []}
    bpftrace_rss = []
    todo, r = configs, 0
    while todo:
        order = todo[r % len(todo):] + todo[:r % len(todo)]
        log(f"round {r + 1}: {', '.join(c.name for c, _ in order)}")
        for tracer, ws in order:
            try:
                rec = session(work, tracer, ws, r, memory, bpftrace_rss)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                # One failed session (a tracer that would not start or stop) costs its figures,
                # not the run: it is recorded and the next one goes on.
                log(f"  {tracer.name}: session failed: {e}")
                sessions.append({"round": r, "config": tracer.name, "failed": str(e), "work": {},
                                 "contaminated": False, "foreign_bpf": []})
                continue
            sessions.append(rec)
            log(f"  {tracer.name}: " + ", ".join(
                f"{w}{'/' + k if k != 'wall' else ''}="
                + (f"{v['value']:.1f}" if v["value"] is not None else
                   f"({min_value(v, k)}: disturbed: "
                   f"{','.join(sorted({x for s in v['samples'] for x in s['disturbed']}) or ['foreign BPF'])})")
                for w, kinds in rec["work"].items() for k, v in kinds.items())
                + (f" [{rec['loop_anomaly_lines']} anomaly lines from the loops]" if rec.get("loop_anomaly_lines") else "")
                + (" [other tracing programs attached: left out]" if rec["contaminated"] else ""))
        r += 1
        if r < args.rounds:
            continue
        if r < args.loop_rounds:
            todo = loop_configs(configs)
            continue
        todo = (lacking(sessions, configs)
                if r < max(args.rounds, args.loop_rounds) + args.extra_rounds
                and time.monotonic() < work.deadline else [])
        if todo:
            log(f"extra round for {', '.join(c.name for c, _ in todo)}: too few clean sessions")

    log(f"anomaly storm: {args.storm_writes} anomalous writes")
    storm = storm_phase(work, args.storm_writes)
    pairs = 2 if args.quick else 8
    log(f"chain: {', '.join(CHAINED)}, each {pairs} links under ebpfh between untraced ones, "
        f"{work.chain_runs} runs a link")
    chain = chain_phase(work, normal_state, pairs)

    # Per-profile kernel memory, from the profiles the normal-mode monitor saved.
    rows = profile_rows(normal_state)
    named = {}
    for prog in ["ls", "bash", "python3", "make", "cc", "sh", "sed", "true", "nginx", "redis-server"]:
        path = shutil.which(prog) or (f"/usr/sbin/{prog}" if os.path.exists(f"/usr/sbin/{prog}") else None)
        if path:
            named[stat_key(os.path.realpath(path))] = prog
    # The compiler's helpers, found through the driver.
    for helper in ["cc1", "as", "collect2", "ld"]:
        try:
            p = sh(["cc", f"-print-prog-name={helper}"], stdout=subprocess.PIPE, text=True).stdout.strip()
            p = p if os.path.isabs(p) else shutil.which(p)
            if p:
                named.setdefault(stat_key(os.path.realpath(p)), helper)
        except Exception:
            pass
    per_named = {named[r["profile"]]: r for r in rows if r["profile"] in named}
    kb_named = [r["kernel_bytes"] for r in per_named.values()]
    kb_all = [r["kernel_bytes"] for r in rows]
    memory.update({
        "kernel_map_bytes_note": "memlock of every map the monitor holds (preallocated for --max-profiles 4096, --max-rows 65536)",
        "profiles_saved": len(rows),
        "profile_bytes_median_named": statistics.median(kb_named) if kb_named else None,
        "profile_bytes_max_named": max(kb_named) if kb_named else None,
        "profile_bytes_median_all": statistics.median(kb_all) if kb_all else None,
        "profile_bytes_max_all": max(kb_all) if kb_all else None,
        "profiles_in_use_bytes_all": sum(kb_all),
        "named_profiles": {k: {f: v[f] for f in ("exe", "state", "train_rows", "test_rows", "kernel_bytes")}
                           for k, v in sorted(per_named.items())},
        "bpftrace_rss_bytes": statistics.median(bpftrace_rss) if bpftrace_rss else None,
    })
    for k in ("monitor_rss_bytes", "monitor_rss_peak_bytes"):
        memory[k] = max(memory[k]) if memory[k] else None

    summary = summarize(sessions, configs)
    summary["verdict"]["retries_cut_by_budget"] = work.retries_cut
    summary["verdict"]["churn_paired_pct_over_untraced"] = chain["pct_over_untraced"]["churn"]
    summary["verdict"]["chain_pct_over_untraced"] = chain["pct_over_untraced"]
    # ebpfh's % over untraced on these workloads is the chain's; the sessions' stays in `spread`.
    v = summary["verdict"]
    for w, x in chain["pct_over_untraced"].items():
        summary["figures"][f"ebpfh.{w}.pct"] = x["median"]
        # A chain figure rests on its clean comparisons as a session figure on clean sessions.
        v["clean_sessions_per_figure"][f"ebpfh.{w}.chain_pct"] = x["n"]
    v["rests_on_clean_sessions_min"] = min(v["clean_sessions_per_figure"].values())
    v["settled"] = v["settled"] and v["rests_on_clean_sessions_min"] >= MIN_CLEAN
    out = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": r,
        "full_rounds": args.rounds,
        "loop_rounds": args.loop_rounds,
        "quick": args.quick,
        "disturbance_rule": {"foreign_cpu": measure.FOREIGN_CPU, "steal": measure.STEAL,
                             "solo_cpu": measure.SOLO_CPU, "foreign_calls": measure.FOREIGN_CALLS,
                             "min_clean_sessions": MIN_CLEAN},
        "loop_counts": {**work.n, "strace": f"1/{SLOW_LOOP_SHARE['strace']} of those",
                        "auditd": f"1/{SLOW_LOOP_SHARE['auditd']} of those", "at_least": 10_000},
        "spawns": work.n_spawn,
        "requests": {**work.requests, "strace, auditd": "1/10 of those (spawns too)"},
        "units": {w: u for w, (u, _) in WORKLOADS.items()},
        "verdict": summary["verdict"],
        "figures": summary["figures"],
        "spread": summary["spread"],
        "memory": memory,
        "anomaly_storm": storm,
        "chain": chain,
        "sessions": sessions,
        "profile_states": {named.get(r["profile"], r["exe"]): r["state"] for r in rows
                           if r["profile"] in named or r["exe"].startswith(OUT)},
        "seconds": round(time.monotonic() - started),
    }
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print_table(out, configs)
    if prev is not None:
        print_compare(prev, out, args.compare)
    print(f"\nfull results: {args.output} ({out['seconds']} s)")


def summarize(sessions, configs):
    """Spreads over clean sessions, the flat `figures` a later run compares with, and the verdict."""
    spread, figures = {}, {}
    for tracer, ws in configs:
        c = tracer.name
        for w in ws:
            spread.setdefault(w, {})[c] = {"wall": spread_of(figure_values(sessions, c, w))}
            if w in LOOPS and c in BPF_CONFIGS:
                spread[w][c]["bpf_ns_per_run"] = spread_of(figure_values(sessions, c, w, "bpf_stats"))
    for w, per in spread.items():
        base = (per["untraced"]["wall"] or {}).get("median")
        for c, s in per.items():
            vals, disturbed = figure_values(sessions, c, w)
            if c != "untraced" and session_pairs(sessions, c, w):
                # Paired: each session against its own untraced runs (see `session`).
                if w in LOOPS:
                    s["added_ns"] = paired_spread(sessions, c, w)
                s["pct_over_untraced"] = paired_spread(sessions, c, w, pct=True)
            elif base and vals and c != "untraced":
                s["pct_over_untraced"] = spread_of(([(v / base - 1) * 100 for v in vals], disturbed))
            if s.get("added_ns"):
                figures[f"{c}.{w}.added_ns"] = s["added_ns"]["median"]
            if s.get("pct_over_untraced") and w not in LOOPS:
                figures[f"{c}.{w}.pct"] = s["pct_over_untraced"]["median"]
            if s.get("bpf_ns_per_run"):
                figures[f"{c}.{w}.bpf_ns_per_run"] = s["bpf_ns_per_run"]["median"]
            if s["wall"]:
                figures[f"{c}.{w}.{WORKLOADS[w][0]}"] = s["wall"]["median"]

    def med(w, c, k):
        return ((spread.get(w, {}).get(c) or {}).get(k) or {}).get("median")

    vs, ratio = {}, {}
    for w in LOOPS:
        bt = spread[w]["bpftrace"]
        for mode, c in EBPFH_MODES.items():
            e = spread[w][c]
            eb, bb = e.get("bpf_ns_per_run"), bt.get("bpf_ns_per_run")
            if e.get("added_ns") and bt.get("added_ns") and eb and bb:
                # Below only when both measures say so: wall time is what a user pays (bpftrace's
                # perf-event path is outside its program's run time), ns per run is the steadier.
                wall_below = e["added_ns"]["median"] < bt["added_ns"]["median"]
                bpf_below = eb["median"] < bb["median"]
                vs[f"{w}.{mode}"] = {
                    "ebpfh_added_ns": e["added_ns"], "bpftrace_added_ns": bt["added_ns"],
                    "ebpfh_bpf_ns_per_run": eb, "bpftrace_bpf_ns_per_run": bb,
                    "wall_below": wall_below, "bpf_stats_below": bpf_below,
                    "below": wall_below and bpf_below,
                    "ranges_apart": e["added_ns"]["max"] < bt["added_ns"]["min"] and eb["max"] < bb["min"]}
        bn, bt_ = med(w, "ebpfh", "bpf_ns_per_run"), med(w, "ebpfh_training", "bpf_ns_per_run")
        an, at = med(w, "ebpfh", "added_ns"), med(w, "ebpfh_training", "added_ns")
        ratio[w] = {"bpf_stats": round(bn / bt_, 2) if bn and bt_ else None,
                    "wall": round(an / at, 2) if an and at and at > 0 else None}
        figures[f"ebpfh.{w}.normal_over_training_bpf"] = ratio[w]["bpf_stats"]
    # Every figure the verdict uses, and how many clean sessions it rests on (0: none).
    rests = {}
    for c in VERDICT_CONFIGS:
        for w in LOOPS + ["churn"]:
            kinds = ["wall"] + (["bpf_ns_per_run"] if c in BPF_CONFIGS and w in LOOPS else [])
            if w == "churn" and c not in ("untraced", "ebpfh"):
                continue
            if w in LOOPS and c != "untraced":
                kinds = kinds + ["added_ns"]
            if w == "churn" and c != "untraced":
                kinds = kinds + ["pct_over_untraced"]
            for k in kinds:
                rests[f"{c}.{w}.{k}"] = ((spread.get(w, {}).get(c) or {}).get(k) or {}).get("n", 0)
    churn = {c: s.get("pct_over_untraced") for c, s in spread["churn"].items() if c != "untraced"}
    samples = [s for x in sessions for kinds in x["work"].values() for k in kinds.values() for s in k["samples"]]
    session_figs = [k for x in sessions for kinds in x["work"].values() for k in kinds.values()]
    verdict = {
        "vs_bpftrace": vs,
        "normal_over_training": ratio,
        "normal_over_training_target": 1.3,
        "churn_pct_over_untraced": churn,
        "churn_target_pct": 5,
        "rests_on_clean_sessions_min": min(rests.values()),
        "clean_sessions_per_figure": rests,
        "min_clean_sessions": MIN_CLEAN,
        "samples": len(samples),
        "samples_disturbed": sum(1 for s in samples if s["disturbed"]),
        "session_figures": len(session_figs),
        "session_figures_excluded": sum(1 for k in session_figs if k["value"] is None),
        "sessions_contaminated": sum(1 for x in sessions if x["contaminated"]),
        "sessions_failed": sum(1 for x in sessions if x.get("failed")),
    }
    verdict["settled"] = (verdict["rests_on_clean_sessions_min"] >= MIN_CLEAN
                          and len(vs) == len(LOOPS) * len(EBPFH_MODES))
    return {"spread": spread, "figures": figures, "verdict": verdict}


def machine():
    cpu = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break

    def version(argv):
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            return (r.stdout.strip().splitlines() or [""])[0]
        except OSError:
            return None
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu": cpu,
            "bpftrace": version(["bpftrace", "--version"]), "strace": version(["strace", "-V"]),
            "auditd": version(["auditctl", "-v"]), "nginx": version(["nginx", "-v"]),
            "redis": version(["redis-server", "--version"])}


def fmt(s, unit="", sign=False):
    """median (min..max); * when no session behind it was clean."""
    if not s:
        return "-"
    f = (lambda v: f"{v:.2f}") if unit == "s" else (lambda v: f"{v:+.0f}" if sign else f"{v:.0f}")
    star = "*" if s.get("disturbed") else ""
    if s["min"] == s["max"]:
        return f"{f(s['median'])}{star}"
    return f"{f(s['median'])} ({f(s['min'])}..{f(s['max'])}){star}"


def print_table(out, configs):
    names = [c.name for c, _ in configs]
    sp = out["spread"]
    print(f"\nmedian (min..max) over clean sessions (*: none was clean, so over disturbed ones); "
          f"{out['rounds']} rounds ({out.get('full_rounds', out['rounds'])} of every workload, "
          f"the others of the loops or extra), {out['date']}, "
          f"{out['machine']['cpus']} x {out['machine']['cpu']}, Linux {out['machine']['kernel']}")
    print("\n| workload | unit | " + " | ".join(names) + " |")
    print("|---|---|" + "---:|" * len(names))
    for w, (unit, desc) in WORKLOADS.items():
        cells = [fmt((sp[w].get(n) or {}).get("wall"), unit) for n in names]
        print(f"| {desc} | {unit} | " + " | ".join(cells) + " |")
    print("\nadded per call over untraced, wall ns (median of each session's difference from the untraced "
          "runs right around it) \\| kernel.bpf_stats ns per call in the tracer's programs "
          "(run_time_ns of all of them over run_cnt of its sys_enter program):")
    print("\n| loop | " + " | ".join(BPF_CONFIGS) + " |")
    print("|---|" + "---:|" * len(BPF_CONFIGS))
    for w in LOOPS:
        cells = [f"{fmt(sp[w][c].get('added_ns'), sign=True)} \\| {fmt(sp[w][c].get('bpf_ns_per_run'))}"
                 for c in BPF_CONFIGS]
        print(f"| {w} | " + " | ".join(cells) + " |")
    print("\n% over untraced (process and server workloads; ebpfh's from the chain phase, its "
          "sessions' in brackets):")
    chain = out["verdict"].get("chain_pct_over_untraced", {})

    def pct(w, c, s):
        sess = f"{fmt(s.get('pct_over_untraced'), sign=True)}%"
        if c == "ebpfh" and w in chain:
            return f"{fmt(chain[w], sign=True)}% [{sess}]"
        return sess
    for w in PROCESS:
        print(f"  {w:6} " + ", ".join(f"{c} {pct(w, c, s)}" for c, s in sp[w].items() if c != "untraced"))
    v = out["verdict"]
    print(f"\nVERDICT ({'settled' if v['settled'] else 'UNSETTLED'}: every figure rests on >= "
          f"{v['rests_on_clean_sessions_min']} clean sessions (needs {v['min_clean_sessions']}); "
          f"{v['samples_disturbed']} of {v['samples']} runs disturbed and retried, "
          f"{v['session_figures_excluded']} of {v['session_figures']} session figures excluded, "
          f"{v['sessions_contaminated']} sessions with foreign BPF programs"
          + (f", {v['sessions_failed']} sessions failed" if v["sessions_failed"] else "")
          + (f", {v['retries_cut_by_budget']} retries cut by the time budget" if v["retries_cut_by_budget"] else "")
          + ")")
    # A target read off disturbed figures is not a result.
    unsettled = "" if v["settled"] else " (unsettled)"
    below = [k for k, x in v["vs_bpftrace"].items() if x["below"]]
    print(f"  ebpfh below bpftrace (medians of added wall ns and of ns per run, both): "
          f"{len(below)}/{len(v['vs_bpftrace'])} loop x mode; ranges apart on "
          f"{sum(1 for x in v['vs_bpftrace'].values() if x['ranges_apart'])}{unsettled}")
    for k, x in v["vs_bpftrace"].items():
        word = "below" if x["below"] else ("NOT below" if not (x["wall_below"] or x["bpf_stats_below"])
                                           else "measures disagree")
        print(f"    {k:16} {word}{' (ranges apart)' if x['ranges_apart'] else ''}: added "
              f"{fmt(x['ebpfh_added_ns'], sign=True)} vs {fmt(x['bpftrace_added_ns'], sign=True)} ns, "
              f"{fmt(x['ebpfh_bpf_ns_per_run'])} vs {fmt(x['bpftrace_bpf_ns_per_run'])} ns per run")
    for w, x in v["normal_over_training"].items():
        ok = x["bpf_stats"] is not None and x["bpf_stats"] <= v["normal_over_training_target"]
        print(f"  normal/training {w}: {x['bpf_stats']} (bpf_stats), {x['wall']} (wall added ns): "
              f"<= {v['normal_over_training_target']} {'met' if ok else 'NOT met'}{unsettled}")
    # The verdict's figure is the chain's (chain_phase); the sessions' is shown beside it.
    p = v.get("churn_paired_pct_over_untraced")
    if p:
        sess = (v["churn_pct_over_untraced"] or {}).get("ebpfh")
        print(f"  fork+exec+wait: ebpfh {fmt(p, sign=True)}% over untraced (median of {p['n']} "
              f"{'disturbed ' if p['disturbed'] else 'clean '}runs between untraced ones; sessions: "
              f"{fmt(sess, sign=True) if sess else '-'}%): <= {v['churn_target_pct']}% "
              f"{'met' if p['median'] <= v['churn_target_pct'] else 'NOT met'}"
              f"{' (unsettled)' if p['disturbed'] or p['n'] < MIN_CLEAN else ''}")
    m = out["memory"]
    print(f"\nkernel maps: {m.get('kernel_map_bytes', 0) / 2**20:.1f} MiB locked in {m.get('kernel_maps')} maps; "
          f"per profile median {m['profile_bytes_median_named']} B, max {m['profile_bytes_max_named']} B "
          f"(named programs), all {m['profiles_saved']} profiles: median {m['profile_bytes_median_all']} B, "
          f"max {m['profile_bytes_max_all']} B; monitor RSS {(m['monitor_rss_bytes'] or 0) / 2**20:.1f} MiB")
    print_storm(out["anomaly_storm"], runs=False)


def print_storm(s, runs=True):
    print(f"anomaly storm: {s['writes']} anomalous writes in {s['storm_seconds']} s "
          f"({s['anomalies_per_s_generated']}/s): delivered {s['delivered']}, lost {s['lost']}, "
          f"kernel count {s['kernel_count']}; {s['delivered_per_s']} lines/s delivered")
    if not runs:
        return
    for name in ["burst", "sustained", "file", "pipe"]:
        r = s[name]
        print(f"  {name:9} {r['kernel_anomalies']} anomalies, lost {r['lost']}, accounted {r['accounted']}; "
              f"{r['lines']} lines in {r['seconds_until_log_drained']} s: {r['lines_per_s']} lines/s, "
              f"monitor {r['monitor_cpu_seconds']} s CPU ({r['lines_per_monitor_cpu_s']} lines per CPU-second)")


def print_compare(prev, out, path):
    rows, s = measure.compare(prev, out)
    print(f"\ncompared with {path} ({prev.get('date', '?')}):")
    print("| figure | before | now | difference | agrees |")
    print("|---|---:|---:|---:|---|")
    for k, p, v, diff, ok, by in rows:
        if k.endswith(".pct") and diff is not None:
            d = f"{diff:+.1f} pts"
        elif diff is not None:
            d = f"{diff * 100:+.0f}%" + (f" ({v - p:+.1f} ns)" if k.endswith(".added_ns") else "")
        else:
            d = ""
        num = (lambda x: "-" if x is None else f"{x:.2f}" if abs(x) < 10 else f"{x:.0f}")
        word = "" if ok is None else ("NO" if not ok else f"yes (within {s['abs_ns']:.0f} ns)" if by == "absolute"
                                      else "yes")
        print(f"| {k} | {num(p)} | {num(v)} | {d} | {word} |")
    print(f"AGREEMENT: ebpfh figures within {s['tolerance'] * 100:.0f}% (added ns: or within "
          f"{s['abs_ns']:.0f} ns; % figures: within {s['points']:.0f} points, or "
          f"{s['tolerance'] * 100:.0f}% of itself if more): "
          f"{s['ebpfh_agree']}/{s['ebpfh_figures']}"
          + (f", {s['ebpfh_agree_absolute']} of them only by the {s['abs_ns']:.0f} ns" if s["ebpfh_agree_absolute"] else "")
          + f"; all figures: {s['all_agree']}/{s['all_figures']}; ordering against bpftrace the same on "
          f"{s['orderings_same']}/{s['orderings']}")
    if s["ebpfh_disagree"]:
        print(f"  ebpfh figures that disagree: {', '.join(s['ebpfh_disagree'])}")
    if s["orderings_changed"]:
        print(f"  ordering changed: {', '.join(s['orderings_changed'])}")


if __name__ == "__main__":
    main()
