/*
 * Anomaly storm: trained on plain runs (one write), then run with N: it
 * writes N more times, and every write-after-write pair is new to its
 * profile, so each of the N calls is an anomaly for a normal profile.
 * Prints the mean cost of one of those writes in ns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 0;
	struct timespec a, b;
	char line[32];
	int len;

	if (write(1, "storm\n", 6) != 6)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		if (write(1, "x\n", 2) != 2)
			return 1;
	clock_gettime(CLOCK_MONOTONIC, &b);
	len = snprintf(line, sizeof(line), "%.1f\n",
		       n ? ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n : 0.0);
	return write(2, line, len) == len ? 0 : 1;
}
