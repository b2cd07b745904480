"""Where ebpfh's time per call goes (`make bench BENCH_ARGS=--breakdown`).

ebpfh's sys_enter is built again with -DEBPFH_BENCH_STAGE=N (bpf/ebpfh.bpf.c, BENCH_STOP): each
copy stops after one more step of the program. The copies and an empty program are attached
beside a running monitor, sharing its maps (examples/bpf_reference.rs --maps-of), so on every
call of a loop each of them runs on the same task, the same profile and the same data, one
after another; kernel.bpf_stats gives each its own ns per run, and the difference between two
consecutive stages, taken within each run, is what that step costs. Every stage runs warm (the
one before it just touched the same data): these are the costs of a tight loop, and the monitor's
own program (first on the tracepoint) is beside them to show how far that holds.

The copies that go past the window also write it: the loops make one system call, so a window
shifted three times instead of once holds the same calls, and the monitor's state is a throwaway
one. Then, with the monitor alone, `perf record` (cpu-clock samples, where perf is installed)
splits a loop's whole call, kernel entry to exit, by function, and a fork+exec run gives the
monitor's other programs' ns per run (bpf_stats)."""

import json
import os
import re
import shutil
import subprocess

import measure

# (stage, -DEBPFH_BENCH_STAGE value or None for the empty program, what the step adds)
STAGES = [
    ("empty", None, "an empty tp_btf/sys_enter program: what bpf_stats sees of the dispatch, and its own clock reads"),
    ("task", 1, "bpf_get_current_task_btf() and bpf_task_storage_get(): the task's state"),
    ("profile", 2, "the profile lookup (array map)"),
    ("window", 3, "the call's symbol, the clock, the window shift (9 reads, 2 writes) and the two call counters"),
    ("pair test", 4, "the training row's lookup and the test of its 8 pairs"),
    # No BENCH_STOP has this value: the whole program, as a copy beside the others.
    ("full", 5, "the rest: freezing and promotion checks, the normal-mode test, the LFC"),
]
# The monitor's flags per mode, as bench.py's configurations: training that never freezes, frozen
# with a 7-day wait, normal (the loops trained to it first).
MODES = {
    "training": ["--normal-factor", "4294967295", "--normal-factor-den", "1"],
    "frozen": ["--normal-wait", "7d"],
    "normal": ["--normal-wait", "1s"],
}
PERF_LIMIT = 1.5  # % of the samples: functions below it are summed as "other"


def compile_stages(clang, src, out):
    """The stage objects (clang: the compiler and flags of build.rs), by stage name."""
    objs = {}
    for name, n, _ in STAGES:
        if n is None:
            continue
        obj = os.path.join(out, f"ebpfh_stage{n}.bpf.o")
        subprocess.run([*clang, f"-DEBPFH_BENCH_STAGE={n}", "-c", src, "-o", obj], check=True)
        objs[name] = obj
    return objs


class Loader:
    """One bpf_reference process holding one object's sys_enter."""

    def __init__(self, ref, obj, prog, maps_of=None, cpu="0"):
        argv = ["taskset", "-c", cpu, ref] + (["--maps-of", str(maps_of)] if maps_of else []) + [obj, prog]
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("attached"):
            self.p.kill()
            raise RuntimeError(f"bpf_reference {os.path.basename(obj)} did not attach: {line!r}")

    def stop(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def counters(pid):
    """{prog_id: (run_time_ns, run_cnt)} of one process."""
    return measure.prog_counters([pid])


def busiest(before, after):
    """(ns per run, runs) of the program of a process that ran most between two readings."""
    d = [(after[i][0] - before.get(i, (0, 0))[0], after[i][1] - before.get(i, (0, 0))[1]) for i in after]
    rt, cnt = max(d, key=lambda v: v[1], default=(0, 0))
    return (rt / cnt if cnt else None), cnt


def stage_runs(ctx, w, pids, rounds, calls):
    """`rounds` runs of loop w with bpf_stats on; per run the ns per run of each stage's program
    (pids: stage -> the process holding it) and whether the run was clean."""
    prog = os.path.join(ctx["out"], {"getppid": "getppid_loop", "read": "read_loop"}[w])
    runs = []
    with measure.BpfStats():
        for _ in range(rounds):
            before = {k: counters(p) for k, p in pids.items()}
            out, rec = measure.sample(["taskset", "-c", ctx["loop_cpu"], prog, str(calls)],
                                      known=list(pids.values()), solo=True)
            after = {k: counters(p) for k, p in pids.items()}
            ns, foreign = {}, False
            for k in pids:
                ns[k], cnt = busiest(before[k], after[k])
                foreign |= cnt > calls * (1 + measure.FOREIGN_CALLS)
            why = rec["disturbed"] + (["foreign_calls"] if foreign else [])
            # wall_ns_per_call: the run's median block (bench/blocks.h).
            runs.append({"ns_per_run": ns, "wall_ns_per_call": float(out.split()[-1]), "disturbed": why})
    return runs


def summarize(runs, order):
    """Per stage: spread of its ns per run and of its step (this stage minus the one before it,
    run by run) over the clean runs (over all, marked, when none was clean)."""
    clean = [r for r in runs if not r["disturbed"]] or runs
    out = {"runs": len(runs), "clean_runs": sum(1 for r in runs if not r["disturbed"]), "stages": {}}
    prev = None
    for k in order:
        s = {"ns_per_run": measure.spread([r["ns_per_run"][k] for r in clean])}
        if prev is not None:
            s["step"] = measure.paired([(r["ns_per_run"][k], r["ns_per_run"][prev]) for r in clean])
        out["stages"][k] = s
        prev = k
    return out


def perf_split(ctx, w, calls, perf_cpu):
    """perf record (cpu-clock) of one loop run: ns per call by function (share of the samples
    times the loop's ns per call), biggest first; None without a working perf."""
    if not shutil.which("perf"):
        return None
    prog = os.path.join(ctx["out"], {"getppid": "getppid_loop", "read": "read_loop"}[w])
    data = os.path.join(ctx["out"], f"perf-{w}.data")
    r = subprocess.run(["taskset", "-c", perf_cpu, "perf", "record", "-q", "-e", "cpu-clock", "-o", data, "--",
                        "taskset", "-c", ctx["loop_cpu"], prog, str(calls)],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if r.returncode != 0:
        return None
    ns_call = float(r.stdout.split()[0])  # the mean: perf samples the whole run
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "symbol"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    os.unlink(data)
    rows, other = [], 0.0
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(\S+)", line)
        if not m:
            continue
        pct, sym = float(m.group(1)), m.group(3)
        # A JIT'd program's name carries its tag: bpf_prog_<tag>_sys_enter.
        sym = re.sub(r"^bpf_prog_[0-9a-f]{16}_", "bpf_prog_", sym)
        if pct < PERF_LIMIT:
            other += pct
        else:
            rows.append((sym, m.group(2), round(pct, 1), round(pct / 100 * ns_call, 1)))
    rows.append(("other", "", round(other, 1), round(other / 100 * ns_call, 1)))
    return {"ns_per_call": ns_call, "functions": rows}


def program_costs(ctx, mon_pid, spawns, names):
    """ns per run of each of the monitor's programs over a fork+exec run (bpf_stats)."""
    spawn = os.path.join(ctx["out"], "spawn")
    with measure.BpfStats():
        before = counters(mon_pid)
        subprocess.run(["taskset", "-c", ctx["loop_cpu"], spawn, str(spawns), "/bin/true"], check=True,
                       stdout=subprocess.DEVNULL)
        after = counters(mon_pid)
    out = {}
    for i, (rt, cnt) in after.items():
        drt, dcnt = rt - before.get(i, (0, 0))[0], cnt - before.get(i, (0, 0))[1]
        if dcnt:
            out[names.get(i, str(i))] = {"runs": dcnt, "ns_per_run": round(drt / dcnt, 1)}
    return out


def prog_names():
    out = subprocess.run(["bpftool", "-j", "prog", "show"], stdout=subprocess.PIPE, text=True, check=True).stdout
    return {p["id"]: p.get("name", "?") for p in json.loads(out)}


def run(ctx, quick):
    """ctx: what bench.py provides (Ebpfh, train (a started monitor's loops to normal), warm_up,
    ref, empty_obj, clang, src, out, calls, loop_cpu, tracer_cpu, log)."""
    objs = compile_stages(ctx["clang"], ctx["src"], ctx["out"])
    rounds = 3 if quick else 7
    res = {"modes": {}, "stages": [(k, what) for k, _, what in STAGES], "rounds": rounds}
    order = [k for k, _, _ in STAGES] + ["monitor"]
    loops = ("getppid", "read")
    for mode, flags in list(MODES.items()) + [("alone", MODES["normal"])]:
        ctx["log"](f"breakdown: {mode}")
        state = os.path.join(ctx["out"], f"state-breakdown-{mode}")
        mon = ctx["Ebpfh"](f"ebpfh_breakdown_{mode}", state, flags, fresh=True)
        mon.start()
        loaders = []
        try:
            m = {}
            pids = {}
            if mode != "alone":
                for k, n, _ in STAGES:
                    ld = (Loader(ctx["ref"], ctx["empty_obj"], "empty_sys_enter", cpu=ctx["tracer_cpu"])
                          if n is None else
                          Loader(ctx["ref"], objs[k], "sys_enter", maps_of=mon.pid, cpu=ctx["tracer_cpu"]))
                    loaders.append(ld)
                    pids[k] = ld.p.pid
            pids["monitor"] = mon.pid
            if mode in ("normal", "alone"):
                # Trained with the copies attached when they are: their window shifts are part of
                # what the loops' profiles then know.
                ctx["train"](mon)
            for w in loops:
                ctx["warm_up"](w)
                runs = stage_runs(ctx, w, pids, rounds, ctx["calls"][w])
                m[w] = {**summarize(runs, order if mode != "alone" else ["monitor"]), "samples": runs}
            if mode == "alone":
                m["perf"] = {w: perf_split(ctx, w, ctx["calls"][w], ctx["tracer_cpu"]) for w in loops}
                m["programs_over_fork_exec"] = program_costs(ctx, mon.pid, 100 if quick else 300, prog_names())
            res["modes"][mode] = m
        finally:
            for ld in loaders:
                ld.stop()
            mon.stop()
            shutil.rmtree(state, ignore_errors=True)
    return res


def fmt(s, sign=False):
    if not s:
        return "-"
    f = (lambda v: f"{v:+.0f}") if sign else (lambda v: f"{v:.0f}")
    if s["min"] == s["max"]:
        return f(s["median"])
    return f"{f(s['median'])} ({f(s['min'])}..{f(s['max'])})"


def print_breakdown(res):
    cols = [(mode, w) for mode in res["modes"] if mode != "alone" for w in ("getppid", "read")]
    print(f"\nWHERE EACH NS GOES: ebpfh's sys_enter cut down after each step, all side by side on the same "
          f"calls; bpf_stats ns per run, and the step's own ns "
          f"(this stage less the one before, run by run); median (min..max) over the clean runs of {res['rounds']} "
          f"(over all of them when none was clean):")
    print("\n| stage | what it adds | " + " | ".join(f"{w} {mode}" for mode, w in cols) + " |")
    print("|---|---|" + "---:|" * len(cols))
    for k, what in res["stages"] + [("monitor", "the monitor's own sys_enter (shipped object, first on the tracepoint)")]:
        cells = []
        for mode, w in cols:
            s = res["modes"][mode][w]["stages"][k]
            cells.append(fmt(s["ns_per_run"]) + (f", step {fmt(s['step'], True)}" if s.get("step") and k != "monitor" else ""))
        print(f"| {k} | {what} | " + " | ".join(cells) + " |")
    print("clean runs: " + ", ".join(f"{w} {mode} {res['modes'][mode][w]['clean_runs']}/{res['modes'][mode][w]['runs']}"
                                    for mode, w in cols))
    normal = res["modes"].get("alone", {})
    if normal:
        print("the monitor alone (normal mode, no copies beside it): " + ", ".join(
            f"{w} {fmt(normal[w]['stages']['monitor']['ns_per_run'])} ns per run "
            f"({normal[w]['clean_runs']}/{normal[w]['runs']} clean)" for w in ("getppid", "read")))
    for w, p in (normal.get("perf") or {}).items():
        if not p:
            print(f"\nperf: not available (apt-get install linux-perf); {w} not split")
            continue
        print(f"\nperf record -e cpu-clock of the {w} loop under the monitor alone (normal mode): "
              f"{p['ns_per_call']:.0f} ns per call, by function ([k] kernel, [.] user):")
        print("| function | | % of samples | ns per call |")
        print("|---|---|---:|---:|")
        for sym, where, pct, ns in p["functions"]:
            print(f"| {sym} | {where} | {pct} | {ns} |")
    if normal.get("programs_over_fork_exec"):
        print("\nthe monitor's programs over a fork+exec+wait run of /bin/true (bpf_stats): " + ", ".join(
            f"{n} {v['ns_per_run']:.0f} ns x {v['runs']}" for n, v in sorted(normal["programs_over_fork_exec"].items())))
