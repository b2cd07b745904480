/*
 * Timing in blocks for the bench's workloads. A run's figure is the median block, not the mean
 * over the run: on a VM a preemption, a stolen slice or an interrupt storm lands in a few blocks
 * and moves the mean of a whole run by tens of percent (a compile on the other CPU made a
 * 64 ns getppid read 77-133 ns as a mean and 64-69 ns as a median block), while a tracer that
 * runs in the calling task (a BPF program) costs every block alike. Both are printed, the median
 * last; a tracer that makes the task wait for another process (strace, auditd) costs in stalls,
 * and bench.py takes the mean for it.
 */
#ifndef BENCH_BLOCKS_H
#define BENCH_BLOCKS_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Whole ns: a double of the uptime in ns would lose ns after about 100 days. */
static inline long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* N from argv[1] (or dflt), or exits: a count below 1 has no blocks to take a median of. */
static inline long count_arg(int argc, char **argv, long dflt)
{
	long n = argc > 1 ? atol(argv[1]) : dflt;

	if (n < 1) {
		fprintf(stderr, "%s: N must be a positive count\n", argv[0]);
		exit(2);
	}
	return n;
}

/*
 * Shell sort, not qsort(3): glibc's qsort asks the kernel for the machine's memory (sysinfo)
 * before sorting more than 1 KiB, a call the program's trained profile would not know when the
 * training runs were shorter than the measured one; every measured call would end in anomalies.
 */
static void sort_doubles(double *v, long n)
{
	for (long gap = n / 2; gap > 0; gap /= 2)
		for (long i = gap; i < n; i++)
			for (long j = i; j >= gap && v[j - gap] > v[j]; j -= gap) {
				double t = v[j];

				v[j] = v[j - gap];
				v[j - gap] = t;
			}
}

/* Prints "MEAN MEDIAN" of v[0..n) in unit (sorts v); mean is the whole run's total / calls. */
static inline void print_mean_median(double total, long calls, double *v, long n, double unit)
{
	sort_doubles(v, n);
	printf("%.1f %.1f\n", total / calls / unit, (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) / unit);
}

#endif
