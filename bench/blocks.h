/*
 * Timing in blocks for the bench's workloads. A run's figure is the median block, not the mean
 * over the run: on a VM a preemption, a stolen slice or an interrupt storm lands in a few blocks
 * and moves the mean of a whole run by tens of percent (a compile on the other CPU made a
 * 64 ns getppid read 77-133 ns as a mean and 64-69 ns as a median block), while a tracer's cost
 * is in every block alike. Both are printed, the median last.
 */
#ifndef BENCH_BLOCKS_H
#define BENCH_BLOCKS_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
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
