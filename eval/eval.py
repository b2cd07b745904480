#!/usr/bin/env python3
"""`make eval`: ebpfh, out of the box, on a generated sysadmin workload and a set of local attacks.

Copies everyday programs into a temporary directory (fresh inodes, so fresh profiles), starts
`ebpfh --headless --normal-wait 20s` with nothing else changed, runs training days, test days with
new inputs, then the attacks and one mimicry, and prints what was flagged, the false alarms, which
programs became normal (and why not the others), and how many log lines it all took.
Needs root (the monitor loads BPF; the harness reads the kernel's process events). Only
127.0.0.1 is used. See README "Evaluation".
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import attacks
import procwatch
import score
import workload

# The programs the workload uses, copied so that each gets a fresh profile. sh and awk are hard
# links to the copies of dash and mawk (as on Debian), so they share those profiles.
PROGRAMS = ["bash", "dash", "python3", "perl", "tar", "gzip", "find", "grep", "sed", "mawk",
            "sort", "cut", "less", "curl", "git", "make", "cp", "mv", "rm", "ls", "cat", "date",
            "stat", "du", "tail", "head", "xargs", "env"]
LINKS = {"sh": "dash", "awk": "mawk"}
# Lines about a profile's life, not about something a process did wrong.
LIFECYCLE_EVENTS = ("profile_created", "normal_started", "new_sequence")


def quiet(line):
    """An incident line that is not an alarm (written because of --log-quiet)."""
    return line["event"] == "incident" and not score.is_alarm(line)
RUN_TIMEOUT = 120


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """One training day, test day or attack: the processes it started and when."""

    def __init__(self, name, kind, env):
        self.name, self.kind, self.env = name, kind, env
        self.roots = []
        self.procs = []
        self.start = time.time_ns()
        self.end = None
        self.service = None
        self.free_port = free_port

    def spawn(self, argv, cwd=None, env_extra=None, stdout=None, stdin=None):
        """Starts one root process; `stdout` is a file name, "pipe" (read with wait) or none;
        `stdin` a file name or none."""
        env = dict(self.env, **(env_extra or {}))
        if stdout == "pipe":
            out = subprocess.PIPE
        else:
            out = open(stdout, "w") if stdout else subprocess.DEVNULL
        inp = open(stdin) if stdin else subprocess.DEVNULL
        earliest = procwatch.mono_ns()
        # A session of its own, so that finish() can end whatever the run left behind.
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.DEVNULL,
                             stdin=inp, start_new_session=True)
        if stdout and stdout != "pipe":
            out.close()
        if stdin:
            inp.close()
        self.roots.append((p.pid, earliest))
        self.procs.append(p)
        return p

    def wait(self, p, timeout=RUN_TIMEOUT):
        try:
            p.communicate(timeout=timeout)  # drains a piped stdout
            return p.returncode
        except subprocess.TimeoutExpired:
            log(f"eval: {self.name}: {p.args[0]} did not finish in {timeout}s; killed it")
            os.killpg(p.pid, signal.SIGKILL)
            return p.wait()

    def finish(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if p.poll() is None:
                p.wait()
        self.end = time.time_ns()


class PidsCap:
    """Caps everything the harness starts (the monitor, every run and what it forks) with the
    cgroup-v1 pids controller, so that a runaway workload or attack (a fork bomb) fails its
    forks instead of filling the machine's pid table."""

    ROOT = "/sys/fs/cgroup/pids"

    def __init__(self, limit):
        self.dir = None
        if not os.path.isdir(self.ROOT):
            raise SystemExit(f"eval: no pids cgroup controller at {self.ROOT}; the workload "
                             "must run capped (mount it or run on a host that has it)")
        self.dir = os.path.join(self.ROOT, f"ebpfh-eval-{os.getpid()}")
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "pids.max"), "w") as f:
            f.write(str(limit))
        with open(os.path.join(self.dir, "tasks"), "w") as f:
            f.write(str(os.getpid()))

    def close(self):
        if not self.dir:
            return
        with open(os.path.join(self.ROOT, "tasks"), "w") as f:
            f.write(str(os.getpid()))
        for _ in range(50):
            try:
                os.rmdir(self.dir)
                return
            except OSError:
                time.sleep(0.1)
        log(f"eval: could not remove {self.dir} (processes left in it?)")


class Monitor:
    def __init__(self, ebpfh, tmp, normal_wait):
        self.ebpfh = ebpfh
        self.log_path = os.path.join(tmp, "events.jsonl")
        self.run_dir = os.path.join(tmp, "run")
        self.stderr = open(os.path.join(tmp, "monitor.stderr"), "w")
        # --log-quiet: the incidents that are not alarms are written too (marked
        # "alarm": false), for the per-incident listing; they never count as alarms.
        self.proc = subprocess.Popen(
            [ebpfh, "--headless", "--normal-wait", normal_wait, "--log", self.log_path,
             "--log-quiet",
             "--state-dir", os.path.join(tmp, "state"), "--run-dir", self.run_dir],
            stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"eval: the monitor exited at start; see {self.stderr.name}")
            try:
                self.status()
                return
            except (subprocess.CalledProcessError, json.JSONDecodeError):
                time.sleep(0.2)
        self.stop()
        raise SystemExit("eval: the monitor did not answer on its control socket within 60 s")

    def query(self, *args):
        out = subprocess.run([self.ebpfh, *args, "--run-dir", self.run_dir, "--json"],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    def status(self):
        return self.query("status")

    def profiles(self):
        return self.query("profiles")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def copy_programs(bin_dir):
    os.makedirs(bin_dir)
    keys = {}
    for name in PROGRAMS:
        src = shutil.which(name, path="/usr/bin:/bin:/usr/local/bin")
        if not src:
            raise SystemExit(f"eval: '{name}' is not installed; `make eval` installs it")
        dst = os.path.join(bin_dir, name)
        shutil.copy2(os.path.realpath(src), dst)  # a copy: a new inode, a fresh profile
        st = os.stat(dst)
        keys[f"{st.st_dev}:{st.st_ino}"] = name
    for link, target in LINKS.items():
        os.link(os.path.join(bin_dir, target), os.path.join(bin_dir, link))
    return keys


def run_day(kind, index, args, bin_dir, tools, days_dir, env):
    script = workload.day(args.seed, kind, index, bin_dir, tools, days_dir,
                          (free_port(), free_port()))
    d = os.path.dirname(script)
    run = Run(f"{kind} day {index}", kind, dict(env, HOME=os.path.join(d, "home")))
    # Typed into a shell: bash -s reads the day from its input (bash's own profile).
    run.wait(run.spawn([os.path.join(bin_dir, "bash"), "-s"], cwd=d,
                       stdout=os.path.join(d, "out.txt"), stdin=script))
    run.finish()
    return run


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=60, help="training days (default 60)")
    ap.add_argument("--test", type=int, default=20, help="test days (default 20)")
    ap.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    ap.add_argument("--quick", action="store_true", help="8 training and 3 test days")
    ap.add_argument("--normal-wait", default="20s", help="the monitor's --normal-wait")
    ap.add_argument("--ebpfh", default="target/release/ebpfh")
    ap.add_argument("--json", metavar="FILE", help="also write every number to FILE")
    ap.add_argument("--incidents", metavar="FILE",
                    help="write every incident of the runs (alarm or not) to FILE, one a line")
    ap.add_argument("--pids-max", type=int, default=2000,
                    help="cap on the processes the evaluation may have at once (default 2000)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    if a.quick:
        a.train, a.test = 8, 3
    return a


def parse_wait(s):
    units = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u) and s[: -len(u)].isdigit():
            return int(s[: -len(u)]) * units[u]
    raise SystemExit(f"eval: cannot read --normal-wait '{s}' (use e.g. 20s)")


def main():
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("eval: needs root (the monitor loads BPF programs); run `sudo make eval`")
    ebpfh = os.path.abspath(args.ebpfh)
    if not os.access(ebpfh, os.X_OK):
        raise SystemExit(f"eval: no ebpfh binary at '{ebpfh}'; build it with `cargo build --release`")
    wait_s = parse_wait(args.normal_wait)
    # Not under /tmp: the monitor refuses a state directory that others could write on the way.
    tmp = tempfile.mkdtemp(prefix="ebpfh-eval-", dir="/var/lib")
    os.chmod(tmp, 0o755)
    cap = None
    try:
        cap = PidsCap(args.pids_max)
        result = evaluate(args, ebpfh, tmp, wait_s)
    finally:
        if cap:
            cap.close()
        if args.keep:
            log(f"eval: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(report(result, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
    if args.incidents:
        with open(args.incidents, "w") as f:
            for row in result["incidents"]:
                f.write(json.dumps(row, sort_keys=True) + "\n")


def evaluate(args, ebpfh, tmp, wait_s):
    bin_dir = os.path.join(tmp, "bin")
    keys = copy_programs(bin_dir)
    attack_dir = os.path.join(tmp, "attack")
    attacks.setup(attack_dir, bin_dir)
    tools = os.path.join(tmp, "tools")
    workload.install_tools(tools)
    days_dir = os.path.join(tmp, "days")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb",
           "GIT_CONFIG_NOSYSTEM": "1"}

    tai_mono = procwatch.tai_minus_mono_ns()
    tai_utc = procwatch.tai_minus_utc_ns()
    watch = procwatch.ProcWatch()
    t0 = time.time()
    mon = Monitor(ebpfh, tmp, args.normal_wait)
    started = time.time_ns()
    runs = []
    try:
        for i in range(1, args.train + 1):
            t = time.time()
            runs.append(run_day("train", i, args, bin_dir, tools, days_dir, env))
            log(f"eval: training day {i}/{args.train} ({time.time() - t:.1f} s)")
            shutil.rmtree(os.path.dirname(runs[-1].env["HOME"]), ignore_errors=True)
        # Let profiles that froze on the last days reach their normal time.
        time.sleep(wait_s + 1)
        after_training = mon.profiles()
        settings = mon.status()["settings"]
        for i in range(1, args.test + 1):
            t = time.time()
            runs.append(run_day("test", i, args, bin_dir, tools, days_dir, env))
            log(f"eval: test day {i}/{args.test} ({time.time() - t:.1f} s)")
            shutil.rmtree(os.path.dirname(runs[-1].env["HOME"]), ignore_errors=True)
        for kind, table in (("attack", attacks.ATTACKS), ("mimicry", attacks.MIMICRY)):
            for name, fn in table:
                run = Run(name, kind, dict(env, HOME=os.path.join(attack_dir, "home")))
                run.service = os.path.join(tools, "service.py")
                fn(run, bin_dir, attack_dir)
                run.finish()
                runs.append(run)
                log(f"eval: {name}")
        at_end = mon.profiles()
        status = mon.status()
    finally:
        mon.stop()
        time.sleep(0.2)
        watch.stop()
    elapsed = time.time() - t0
    if procwatch.tai_minus_mono_ns() - tai_mono > 1_000_000:
        log("eval: warning: the clock was stepped during the run; attribution may be off")

    lines = []
    with open(mon.log_path) as f:
        for raw in f:
            lines.append(json.loads(raw))
    tree = score.Tree(watch.events, {r.name: r.roots for r in runs})
    by_run, other, no_process = score.attribute(
        lines, tree, lambda utc: utc + tai_utc - tai_mono)
    return summarize(args, runs, by_run, lines, other, no_process, keys, after_training, at_end,
                     settings, status, watch.lost, started, elapsed, bin_dir)


def summarize(args, runs, by_run, lines, other, no_process, keys, after_training, at_end,
              settings, status, proc_lost, started, elapsed, bin_dir):
    strip = bin_dir + "/"
    per_run = []
    incidents = []
    for r in runs:
        ls = by_run.get(r.name, [])
        n, what = score.describe_alarms(ls, strip)
        for l in ls:
            if l["event"] != "incident":
                continue
            exe = l["exe"]
            incidents.append({
                "run": r.name, "kind": r.kind,
                "program": exe[len(strip):] if exe.startswith(strip) else exe,
                "pid": l["pid"], "first": l["first"],
                "alarm": score.is_alarm(l), "alarm_reason": l.get("alarm_reason", ""),
                "max_lfc": l["max_lfc"], "anomalous_calls": l["anomalous_calls"],
                "unknown_calls": l.get("unknown_calls", 0),
                "novel_calls": l.get("novel_calls", 0),
                "syscalls": l.get("syscalls", {}),
            })
        per_run.append({
            "name": r.name, "kind": r.kind, "flagged": score.flagged(ls), "anomalous_calls": n,
            "what": what, "incidents": score.incidents(ls),
            "lines": len(ls),
            "alarm_lines": sum(l["event"] not in LIFECYCLE_EVENTS and not quiet(l) for l in ls),
            "quiet_incidents": sum(quiet(l) for l in ls),
            "seconds": round((r.end - r.start) / 1e9, 1),
        })
    windows = [(r.start, r.end) for r in runs if r.kind == "train"]
    firsts = {}
    for l in lines:
        if l["event"] == "normal_started" and l.get("profile") in keys:
            firsts.setdefault(l["profile"], score.parse_time(l["time"]))
    programs = []
    nf, nd = settings.get("normal_factor", 128), settings.get("normal_factor_den", 32)
    rows = {row["profile"]: row for row in after_training}
    end_rows = {row["profile"]: row for row in at_end}
    for key, name in sorted(keys.items(), key=lambda kv: kv[1]):
        row, end = rows.get(key), end_rows.get(key)
        t = firsts.get(key)
        programs.append({
            "program": name,
            "state": row["state"] if row else "unused",
            "why": (score.why_not_normal(row, nf, nd) if row and row["state"] != "normal"
                    else ("never ran" if not row else "")),
            "state_at_end": end["state"] if end else "unused",
            "calls": end["calls"] if end else 0,
            "first_normal_day": score.day_of(t, windows) if t else None,
            "first_normal_secs": round((t - started) / 1e9) if t else None,
        })
    by_event = {}
    for l in lines:
        by_event[l["event"]] = by_event.get(l["event"], 0) + 1
    return {
        "seed": args.seed, "train_days": args.train, "test_days": args.test,
        "normal_wait": args.normal_wait, "elapsed_secs": round(elapsed),
        "settings": settings, "runs": per_run, "programs": programs, "incidents": incidents,
        "log_lines": len(lines), "log_lines_by_event": by_event,
        "log_lines_other_processes": other, "log_lines_no_process": no_process,
        "proc_events_lost": proc_lost, "monitor_losses": status.get("losses"),
    }


def report(res, args):
    out = []
    p = out.append
    runs = res["runs"]
    att = [r for r in runs if r["kind"] == "attack"]
    mim = [r for r in runs if r["kind"] == "mimicry"]
    test = [r for r in runs if r["kind"] == "test"]
    train = [r for r in runs if r["kind"] == "train"]
    s = res["settings"]
    p(f"ebpfh evaluation: seed {res['seed']}, {res['train_days']} training days, "
      f"{res['test_days']} test days, --normal-wait {res['normal_wait']}, "
      f"{res['elapsed_secs']} s")
    p("settings: " + " ".join(f"{k}={v}" for k, v in sorted(s.items())))
    p("")
    p(f"attacks flagged: {sum(r['flagged'] for r in att)}/{len(att)}")
    for r in att + mim:
        p(f"  {'FLAGGED' if r['flagged'] else 'missed '}  {r['name']:<40}"
          + (f" {r['anomalous_calls']} anomalous calls, {r['alarm_lines']} lines: {r['what']}"
             if r["flagged"] else ""))
    p("")
    fa = [r for r in test if r["flagged"]]
    p(f"test days with a false alarm: {len(fa)}/{len(test)}")
    for r in fa:
        p(f"  {r['name']}: {r['anomalous_calls']} anomalous calls, {r['alarm_lines']} lines: "
          f"{r['what']}")
    tr = [r for r in train if r["flagged"]]
    p(f"training days with alarms (profiles already normal): {len(tr)}/{len(train)}")
    inc = res["incidents"]
    for kind, label in (("test", "test days"), ("train", "training days"),
                        ("attack", "attacks")):
        q = [i for i in inc if i["kind"] == kind and not i["alarm"]]
        why = {}
        for i in q:
            why[i["alarm_reason"]] = why.get(i["alarm_reason"], 0) + 1
        a = sum(i["kind"] == kind and i["alarm"] for i in inc)
        p(f"incidents in {label}: {a} alarms, {len(q)} quiet ("
          + (", ".join(f"{k} {v}" for k, v in sorted(why.items())) or "none") + ")")
    p("")
    progs = res["programs"]
    normal = [x for x in progs if x["state"] == "normal"]
    p(f"programs normal after {res['train_days']} training days: {len(normal)}/{len(progs)}"
      f" ({100 * len(normal) // max(len(progs), 1)}%)")
    for x in progs:
        if x["state"] != "normal":
            p(f"  {x['program']:<8} {x['why']}")
    days = [x["first_normal_day"] for x in progs if x["first_normal_day"]]
    p("time to normal (training day of the first normal_started; - = not while training): "
      + (f"median day {score.median(days)}, last day {max(days)}; " if days else "")
      + ", ".join(f"{x['program']} {x['first_normal_day'] or '-'}" for x in progs))
    ends = [x for x in progs if x["state_at_end"] == "normal"]
    p(f"programs normal at the end (after the test days): {len(ends)}/{len(progs)}")
    p("")
    alarm_runs = [r for r in att + mim + test if r["flagged"]]
    inc = sum(r["incidents"] for r in alarm_runs)
    lines = sum(r["alarm_lines"] for r in alarm_runs)
    p(f"lines per incident: {lines / inc:.1f} ({lines} lines about anomalies, {inc} incidents,"
      f" in the flagged test days and attacks)" if inc else "lines per incident: no incidents")
    per = sorted(r["alarm_lines"] for r in alarm_runs)
    if per:
        p(f"lines per flagged run: median {score.median(per)}, max {per[-1]}")
    p(f"log lines in all: {res['log_lines']} ("
      + ", ".join(f"{k} {v}" for k, v in sorted(res["log_lines_by_event"].items()))
      + f"); {res['log_lines_other_processes']} about other processes on the host")
    if res["proc_events_lost"]:
        p(f"WARNING: {res['proc_events_lost']} process events were lost: attribution is "
          "incomplete")
    losses = res.get("monitor_losses") or {}
    if any(v for v in losses.values() if isinstance(v, int)):
        p("monitor losses: " + json.dumps(losses))
    return "\n".join(out)


if __name__ == "__main__":
    main()
