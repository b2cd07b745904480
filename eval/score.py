"""The evaluation's pure logic: which run each log line belongs to, and what the numbers are.

No I/O and no clocks here, so tests/test_score.py can check it on hand-made inputs.

Attribution. Each run (a training day, a test day, an attack) is one or more root processes the
harness started. The proc connector's fork records rebuild the process tree: a process belongs to
a run when it is one of the run's roots or was forked by a process of the run. A pid can be
reused (pid_max is small), so a pid means one *incarnation*: the process forked with that tgid
most recently before the time in question. An ebpfh line names a pid and a time; it belongs to
the run that owns that pid's incarnation at that time, or to no run (someone else on the host).
"""

import bisect
import calendar
import collections

# Lines that say "something was anomalous here" about a process.
ALARM_EVENTS = ("anomaly", "incident")


def is_alarm(line):
    """An `anomaly` line, or an `incident` line that is an alarm: with `--log-quiet` the monitor
    also writes incidents that are not (`"alarm": false`); a line from before the field existed
    is an alarm."""
    return line["event"] in ALARM_EVENTS and line.get("alarm", True) is not False


def parse_time(s):
    """RFC 3339 UTC with up to 9 fractional digits (ebpfh's `time`) → nanoseconds since 1970."""
    date, _, rest = s.partition("T")
    rest = rest.rstrip("Z")
    hms, _, frac = rest.partition(".")
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, se = (int(x) for x in hms.split(":"))
    secs = calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0))
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


class Tree:
    """Process incarnations and their runs, from proc-connector records (see procwatch.py).

    `roots` maps a run name to [(pid, earliest_ns)]: the run's root is the first incarnation of
    pid forked at or after earliest_ns (the harness reads the clock before it forks), from the
    moment it execs the run's program."""

    def __init__(self, proc_events, roots):
        want = collections.defaultdict(list)  # pid -> [(earliest, run)], claimed once each
        for run, pids in roots.items():
            for pid, earliest in pids:
                want[pid].append((earliest, run))
        for v in want.values():
            v.sort()
        self.starts = collections.defaultdict(list)  # tgid -> [fork ts], ascending
        self.owners = collections.defaultdict(list)  # tgid -> [run or None], same order
        # A root's process belongs to its run only from its first exec: between fork and exec
        # it is the harness (its own code, in the harness's profile), not the run.
        awaiting_exec = {}  # tgid -> run
        events = sorted((e for e in proc_events if e[0] in ("fork", "exec")), key=lambda e: e[1])
        for e in events:
            if e[0] == "exec":
                _, ts, _, tgid = e
                run = awaiting_exec.pop(tgid, None)
                if run is not None:
                    self.starts[tgid].append(ts)
                    self.owners[tgid].append(run)
                continue
            _, ts, parent_tgid, child_pid, child_tgid = e
            if child_pid != child_tgid:
                continue  # a new thread: same process, same run
            owner = self.owner(parent_tgid, ts)
            awaiting_exec.pop(child_tgid, None)
            pending = want.get(child_tgid)
            if pending and pending[0][0] <= ts:
                awaiting_exec[child_tgid] = pending.pop(0)[1]
                owner = None
            self.starts[child_tgid].append(ts)
            self.owners[child_tgid].append(owner)

    def owner(self, tgid, ts):
        """The run that owns process `tgid` at monotonic time `ts`, or None."""
        starts = self.starts.get(tgid)
        if not starts:
            return None
        i = bisect.bisect_right(starts, ts) - 1
        return self.owners[tgid][i] if i >= 0 else None

    def members(self, run):
        return sum(o == run for owners in self.owners.values() for o in owners)


def attribute(lines, tree, utc_to_mono):
    """Splits parsed JSON lines into {run: [line]} plus the count of lines about processes of no
    run and of lines about no process. `utc_to_mono(ns)` converts a line's time."""
    by_run = collections.defaultdict(list)
    other = no_process = 0
    for line in lines:
        pid = line.get("pid")
        if pid is None or "exe" not in line:
            no_process += 1
            continue
        # An incident's `time` is when it ended by its rule (after its task may be gone): it
        # belongs where its first anomalous call happened.
        when = line.get("first") if line.get("event") == "incident" else line["time"]
        run = tree.owner(pid, utc_to_mono(parse_time(when)))
        if run is None:
            other += 1
        else:
            by_run[run].append(line)
    return by_run, other, no_process


def alarms(lines):
    """What a run's lines say was anomalous: {exe: Counter(syscall name)} and the number of
    anomalous calls. An `incident` line counts its own calls (`anomalous_calls`, `syscalls`);
    per-call `anomaly` lines count one each, unless an incident of the same task already covers
    them (a bounded number of anomaly lines come with every incident)."""
    calls = collections.defaultdict(collections.Counter)
    lines = [l for l in lines if is_alarm(l)]
    incident_tasks = {(l["pid"], l["tid"]) for l in lines if l["event"] == "incident"}
    n = 0
    for l in lines:
        if l["event"] == "incident":
            names = l.get("syscalls") or {}
            if isinstance(names, list):
                names = {name: 1 for name in names}
            calls[l["exe"]].update(names)
            n += l.get("anomalous_calls", 0)
        elif l["event"] == "anomaly" and (l["pid"], l["tid"]) not in incident_tasks:
            calls[l["exe"]][l["syscall"]["name"]] += 1
            n += 1
    return calls, n


def flagged(lines):
    return any(is_alarm(l) for l in lines)


def describe_alarms(lines, strip=""):
    calls, n = alarms(lines)
    parts = []
    for exe, c in sorted(calls.items()):
        name = exe[len(strip):] if strip and exe.startswith(strip) else exe
        parts.append(f"{name} " + ",".join(f"{k}" + (f"x{v}" if v > 1 else "")
                                          for k, v in c.most_common(4))
                     + (",…" if len(c) > 4 else ""))
    return n, "; ".join(parts)


def incidents(lines):
    """Incidents in a run's lines: `incident` lines where the monitor writes them; otherwise
    (a monitor without incidents) each task with anomalies counts as one."""
    n = sum(l["event"] == "incident" and is_alarm(l) for l in lines)
    if n:
        return n
    return len({(l["pid"], l["tid"]) for l in lines if l["event"] == "anomaly"})


def why_not_normal(row, normal_factor, normal_factor_den):
    """One phrase on why a profile is not normal, from its `ebpfh profiles --json` row. A row
    that explains itself (a `why` or `reason` field) is quoted; otherwise pH's freeze rule is
    spelled out (src/model/profile.rs, maybe_freeze): a profile freezes once the calls since its
    last new pair exceed 1 - den/factor of its training calls (75 % with pH's 128/32)."""
    for k in ("why", "reason", "not_normal_because", "normal_reason"):
        if row.get(k):
            return str(row[k])
    state = row["state"]
    if state == "frozen":
        left = row.get("normal_in_secs")
        return "frozen, normal at its next call" if left == 0 else f"frozen, normal in {left}s"
    train, last = row["train_count"], row["last_mod_count"]
    share = 100.0 * last / train if train else 0.0
    need = 100.0 * (1 - normal_factor_den / normal_factor) if normal_factor else 0.0
    return (f"{state}: {last} of {train} training calls since its last new pair "
            f"({share:.0f}%, freezing needs more than {need:.0f}%)")


def day_of(t, windows):
    """The 1-based index of the window (start, end) holding t, or of the last one that started
    before t (a line between two runs belongs to the time after the earlier one); None before
    the first window and after the last one ended."""
    if not windows or t > windows[-1][1]:
        return None
    i = bisect.bisect_right([s for s, _ in windows], t)
    return i if i > 0 else None


def median(xs):
    xs = sorted(xs)
    if not xs:
        return 0
    m = len(xs) // 2
    if len(xs) % 2:
        return xs[m]
    mid = (xs[m - 1] + xs[m]) / 2
    return int(mid) if mid == int(mid) else mid
