"""Unit tests of the evaluation's pure logic (run by `make test`: python3 -m unittest)."""

import unittest

import score

S = 1_000_000_000


def line(event, pid, t, **kw):
    d = {"time": "1970-01-01T00:00:%02d.000000000Z" % t, "event": event, "pid": pid,
         "tid": kw.pop("tid", pid), "exe": kw.pop("exe", "/b/x")}
    d.update(kw)
    return d


class TreeTest(unittest.TestCase):
    def test_a_root_belongs_to_its_run_from_its_exec_on(self):
        ev = [("fork", 10, 1, 100, 100), ("exec", 15, 100, 100), ("exec", 30, 100, 100)]
        t = score.Tree(ev, {"day 1": [(100, 5)]})
        self.assertIsNone(t.owner(100, 12), "between fork and exec it is the harness")
        self.assertEqual(t.owner(100, 16), "day 1")
        self.assertEqual(t.owner(100, 31), "day 1")

    def test_descendants_belong_to_the_run_of_their_root(self):
        ev = [("fork", 10, 1, 100, 100),   # harness forks the root
              ("exec", 10, 100, 100),
              ("fork", 11, 100, 101, 101),  # root forks a child
              ("fork", 12, 101, 102, 102),  # grandchild (e.g. a double-forked daemon)
              ("fork", 13, 101, 150, 101)]  # a thread of the child: no new process
        t = score.Tree(ev, {"day 1": [(100, 5)]})
        for pid in (100, 101, 102):
            self.assertEqual(t.owner(pid, 20), "day 1")
        self.assertIsNone(t.owner(150, 20))
        self.assertIsNone(t.owner(7, 20))

    def test_a_reused_pid_belongs_to_whoever_forked_it_last(self):
        ev = [("fork", 10, 1, 100, 100), ("exec", 10, 100, 100), ("fork", 11, 100, 101, 101),
              ("exit", 12, 101, 101),
              ("fork", 30, 555, 101, 101)]  # pid 101 again, forked by someone else
        t = score.Tree(ev, {"day 1": [(100, 5)]})
        self.assertEqual(t.owner(101, 20), "day 1")
        self.assertIsNone(t.owner(101, 31))
        self.assertIsNone(t.owner(101, 9))  # before the run's incarnation existed

    def test_a_root_is_the_first_fork_of_its_pid_after_the_harness_read_the_clock(self):
        ev = [("fork", 3, 1, 100, 100),  # an older process with the same pid
              ("exec", 4, 100, 100),
              ("fork", 10, 1, 100, 100), ("exec", 10, 100, 100)]
        t = score.Tree(ev, {"attack": [(100, 5)]})
        self.assertIsNone(t.owner(100, 4))
        self.assertEqual(t.owner(100, 11), "attack")

    def test_runs_with_several_roots_and_unordered_input(self):
        ev = [("fork", 21, 200, 201, 201), ("fork", 20, 1, 200, 200), ("fork", 10, 1, 100, 100),
              ("exec", 10, 100, 100), ("exec", 20, 200, 200)]
        t = score.Tree(ev, {"a": [(100, 5), (200, 15)]})
        self.assertEqual(t.owner(201, 22), "a")
        self.assertEqual(t.members("a"), 3)


class AttributeTest(unittest.TestCase):
    def test_lines_go_to_the_run_owning_their_pid_at_their_time(self):
        t = score.Tree([("fork", 10 * S, 1, 100, 100), ("exec", 10 * S, 100, 100),
                        ("fork", 40 * S, 9, 100, 100)],
                       {"day": [(100, 5 * S)]})
        lines = [line("anomaly", 100, 20), line("anomaly", 100, 45),
                 {"time": "1970-01-01T00:00:20Z", "event": "events_lost"}]
        by_run, other, none = score.attribute(lines, t, lambda ns: ns)
        self.assertEqual(len(by_run["day"]), 1)
        self.assertEqual((other, none), (1, 1))
        # An incident written after the pid was reused belongs where its calls were.
        inc = line("incident", 100, 45, first="1970-01-01T00:00:20Z")
        by_run, other, _ = score.attribute([inc], t, lambda ns: ns)
        self.assertEqual((len(by_run["day"]), other), (1, 0))


class AlarmTest(unittest.TestCase):
    def test_incidents_are_not_counted_twice_with_their_anomaly_lines(self):
        ls = [line("anomaly", 1, 1, syscall={"name": "write"}),
              line("incident", 1, 2, anomalous_calls=40, syscalls=["write", "exit_group"]),
              line("anomaly", 2, 3, exe="/b/y", syscall={"name": "brk"})]
        calls, n = score.alarms(ls)
        self.assertEqual(n, 41)
        self.assertEqual(dict(calls["/b/y"]), {"brk": 1})
        self.assertEqual(set(calls["/b/x"]), {"write", "exit_group"})
        self.assertTrue(score.flagged(ls))
        self.assertEqual(score.incidents(ls), 1)

    def test_without_incident_lines_each_anomalous_task_is_one_incident(self):
        ls = [line("anomaly", 1, 1, syscall={"name": "a"}),
              line("anomaly", 1, 2, syscall={"name": "b"}),
              line("anomaly", 2, 2, tid=3, syscall={"name": "b"}),
              line("normal_started", 4, 2)]
        self.assertEqual(score.incidents(ls), 2)
        self.assertFalse(score.flagged([line("normal_started", 4, 2)]))

    def test_a_quiet_incident_is_no_alarm(self):
        quiet = line("incident", 1, 2, anomalous_calls=2, syscalls={"brk": 2}, alarm=False)
        self.assertFalse(score.flagged([quiet]))
        self.assertEqual(score.alarms([quiet]), ({}, 0))
        alarm = line("incident", 5, 3, anomalous_calls=9, syscalls={"execve": 1}, alarm=True)
        self.assertTrue(score.flagged([quiet, alarm]))
        self.assertEqual(score.incidents([quiet, alarm]), 1)
        self.assertEqual(score.alarms([quiet, alarm])[1], 9)


class MiscTest(unittest.TestCase):
    def test_parse_time_keeps_nanoseconds(self):
        self.assertEqual(score.parse_time("2026-11-23T22:17:14.214168835Z"),
                         1795472234 * S + 214168835)
        self.assertEqual(score.parse_time("1970-01-01T00:00:01.5Z"), S + S // 2)

    def test_why_not_normal_spells_out_phs_rule(self):
        row = {"state": "training", "train_count": 1000, "last_mod_count": 600}
        self.assertIn("60%, freezing needs more than 75%", score.why_not_normal(row, 128, 32))
        self.assertEqual(score.why_not_normal(dict(row, why="novel pairs in the last 3 runs"),
                                              128, 32), "novel pairs in the last 3 runs")
        self.assertEqual(score.why_not_normal({"state": "frozen", "normal_in_secs": 0}, 128, 32),
                         "frozen, normal at its next call")

    def test_day_of(self):
        w = [(10, 20), (30, 40)]
        self.assertEqual([score.day_of(t, w) for t in (5, 15, 25, 35, 40, 50)],
                         [None, 1, 1, 2, 2, None])
        self.assertEqual(score.median([1, 3]), 2)
        self.assertEqual(score.median([1, 2]), 1.5)


if __name__ == "__main__":
    unittest.main()
