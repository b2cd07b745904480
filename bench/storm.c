/*
 * Anomaly storm: trained on plain runs (one write), then run with N: it
 * writes N more times, and every write-after-write pair is new to its
 * profile, so each of the N calls is an anomaly for a normal profile. Before
 * them it calls uname(2), which its training never made: identical writes
 * alone are only a repeat of their first few new pairs, a quiet incident
 * (src/incident.rs), while a call the program never made makes the storm an
 * alarm whose anomaly lines the line-rate runs count.
 *
 * storm N [RATE]: RATE writes per second, as a schedule kept by sleeping
 * until each millisecond's share is due (absolute deadlines, so a late
 * wakeup is made up, not accumulated); no RATE, or 0, writes as fast as it
 * can. The sleeps are calls too (about 1000 a second, and anomalous as
 * well), so the kernel's count of anomalies, not N, is what a monitor must
 * account for.
 *
 * Prints the mean cost of one write in ns and the run's seconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static double seconds(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) + (b->tv_nsec - a->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 0;
	long rate = argc > 2 ? atol(argv[2]) : 0;
	/* Writes per 1 ms tick at RATE (at least one). */
	long per_tick = rate > 0 ? (rate + 999) / 1000 : n;
	long tick_ns = rate > 0 ? 1000000000L * per_tick / rate : 0;
	struct timespec a, b, due;
	char line[64];
	int len;
	struct utsname u;

	if (per_tick < 1)
		per_tick = 1;
	if (write(1, "storm\n", 6) != 6)
		return 1;
	if (n > 0 && uname(&u) < 0)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &a);
	due = a;
	for (long i = 0; i < n;) {
		for (long k = 0; k < per_tick && i < n; k++, i++)
			if (write(1, "x\n", 2) != 2)
				return 1;
		if (rate > 0 && i < n) {
			due.tv_nsec += tick_ns;
			while (due.tv_nsec >= 1000000000L) {
				due.tv_nsec -= 1000000000L;
				due.tv_sec++;
			}
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	len = snprintf(line, sizeof(line), "%.1f %.3f\n",
		       n ? seconds(&a, &b) * 1e9 / n : 0.0, seconds(&a, &b));
	return write(2, line, len) == len ? 0 : 1;
}
