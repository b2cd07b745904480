"""The benchmark's pure statistics (bench/measure.py) on known inputs: the paired differences the
per-call figures are, and the agreement check between two runs. No timing is measured here."""

import unittest

import measure


class Paired(unittest.TestCase):
    def test_median_of_per_session_differences(self):
        # Sessions drift (the baseline goes 200, 260, 230) while the cost stays about 50 ns: the
        # paired median is 50, where traced median minus untraced median would be 60 - 0 = 60.
        pairs = [(250.0, 200.0), (312.0, 260.0), (280.0, 230.0)]
        s = measure.paired(pairs)
        self.assertEqual(s, {"min": 50.0, "median": 50.0, "max": 52.0, "n": 3})

    def test_even_count_takes_the_mean_of_the_middle_two(self):
        s = measure.paired([(110.0, 100.0), (130.0, 100.0), (120.0, 100.0), (140.0, 100.0)])
        self.assertEqual((s["median"], s["n"]), (25.0, 4))

    def test_incomplete_pairs_are_skipped(self):
        s = measure.paired([(250.0, None), (None, 200.0), (260.0, 200.0)])
        self.assertEqual((s["median"], s["n"]), (60.0, 1))
        self.assertIsNone(measure.paired([(None, 1.0)]))

    def test_percent(self):
        s = measure.paired([(110.0, 100.0), (230.0, 200.0)], pct=True)
        self.assertEqual((s["min"], s["median"], s["max"]), (10.0, 12.5, 15.0))

    def test_percent_skips_a_zero_baseline(self):
        self.assertIsNone(measure.paired([(5.0, 0.0)], pct=True))


def run(figures, below=None):
    return {"figures": figures,
            "verdict": {"vs_bpftrace": {k: {"below": v} for k, v in (below or {}).items()}}}


class Agreement(unittest.TestCase):
    def test_relative_tolerance(self):
        self.assertEqual(measure.agrees("ebpfh.getppid.bpf_ns_per_run", 100.0, 115.0)[1:], (True, "relative"))
        self.assertEqual(measure.agrees("ebpfh.getppid.bpf_ns_per_run", 100.0, 116.0)[1:], (False, None))
        self.assertEqual(measure.agrees("ebpfh.getppid.bpf_ns_per_run", 100.0, 85.0)[1:], (True, "relative"))

    def test_added_ns_also_agrees_within_the_absolute_tolerance(self):
        # 20 -> 25 ns is 25%, but 5 ns: a small difference of two ~200 ns wall times.
        self.assertEqual(measure.agrees("ebpfh.getppid.added_ns", 20.0, 25.0)[1:], (True, "absolute"))
        self.assertEqual(measure.agrees("ebpfh.getppid.added_ns", 20.0, 25.5)[1:], (False, None))
        # Only added ns gets it, not a per-run figure of the same size.
        self.assertEqual(measure.agrees("ebpfh.getppid.bpf_ns_per_run", 20.0, 25.0)[1:], (False, None))

    def test_percent_figures_agree_in_points(self):
        diff, ok, by = measure.agrees("ebpfh.nginx.pct", 10.0, 14.0)
        self.assertEqual((diff, ok, by), (4.0, True, "points"))
        self.assertFalse(measure.agrees("ebpfh.nginx.pct", 10.0, 15.5)[1])

    def test_a_large_percent_also_agrees_relatively(self):
        self.assertEqual(measure.agrees("strace.nginx.pct", 6616.0, 6155.0)[1:], (True, "relative"))
        self.assertEqual(measure.agrees("strace.nginx.pct", 6616.0, 5500.0)[1:], (False, None))
        # Where 15% of the figure is more than 5 points: 40% may move by 6.
        self.assertEqual(measure.agrees("auditd.churn.pct", 40.0, 46.0)[1:], (True, "relative"))
        self.assertEqual(measure.agrees("auditd.churn.pct", 40.0, 46.5)[1:], (False, None))
        self.assertEqual(measure.agrees("auditd.churn.pct", 99.0, 110.0)[1:], (True, "relative"))
        self.assertEqual(measure.agrees("auditd.churn.pct", 99.0, 115.0)[1:], (False, None))

    def test_missing_values(self):
        self.assertEqual(measure.agrees("ebpfh.read.added_ns", None, 3.0), (None, None, None))

    def test_a_zero_before_agrees_only_absolutely(self):
        self.assertEqual(measure.agrees("empty_enter.read.added_ns", 0.0, 4.0)[1:], (True, "absolute"))
        self.assertEqual(measure.agrees("ebpfh.read.bpf_ns_per_run", 0.0, 4.0)[1:], (False, None))

    def test_compare_counts_ebpfh_figures_and_orderings(self):
        before = run({"ebpfh.getppid.added_ns": 40.0, "ebpfh.getppid.bpf_ns_per_run": 100.0,
                      "ebpfh_frozen.read.added_ns": 30.0, "bpftrace.getppid.added_ns": 100.0},
                     {"getppid.normal": True, "read.frozen": True})
        now = run({"ebpfh.getppid.added_ns": 44.0, "ebpfh.getppid.bpf_ns_per_run": 130.0,
                   "ebpfh_frozen.read.added_ns": 30.0, "bpftrace.getppid.added_ns": 200.0,
                   "ebpfh.churn.pct": 3.0},
                  {"getppid.normal": True, "read.frozen": False})
        rows, s = measure.compare(before, now)
        self.assertEqual(s["ebpfh_figures"], 3)  # churn.pct has nothing before it
        self.assertEqual(s["ebpfh_agree"], 2)
        self.assertEqual(s["ebpfh_disagree"], ["ebpfh.getppid.bpf_ns_per_run"])
        self.assertEqual((s["all_figures"], s["all_agree"]), (4, 2))
        self.assertEqual((s["orderings"], s["orderings_same"]), (2, 1))
        self.assertEqual(s["orderings_changed"], ["read.frozen"])
        self.assertEqual(rows[-1], ("ebpfh.churn.pct", None, 3.0, None, None, None))

    def test_comparable_takes_an_earlier_run_and_refuses_other_files(self):
        measure.comparable(run({"ebpfh.getppid.added_ns": 40.0, "strace.read.added_ns": None},
                               {"getppid.normal": True}))
        # What a user might pass by mistake: another JSON file, the breakdown's or the storm's
        # results, a hand-edited file. Each is refused before the run, with its reason.
        for doc, why in [([], "no figures"), ({"date": "x"}, "no figures"),
                         ({"figures": {}}, "no figures"), ({"figures": [1.0]}, "no figures"),
                         ({"figures": {"a": "12"}}, "figure a is not a number"),
                         ({"figures": {"a": True}}, "figure a is not a number"),
                         ({"figures": {"a": 1.0}, "verdict": []}, "verdict"),
                         ({"figures": {"a": 1.0}, "verdict": {"vs_bpftrace": {"x": 1}}}, "verdict")]:
            with self.assertRaisesRegex(ValueError, why):
                measure.comparable(doc)


if __name__ == "__main__":
    unittest.main()
