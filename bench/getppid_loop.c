/*
 * N getppid() calls (argv[1], default 5e6) in BLOCKS blocks; prints the mean and the median
 * block's ns per call (see blocks.h).
 */
#include <sys/syscall.h>
#include <unistd.h>

#include "blocks.h"

#define BLOCKS 100

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 5000000;
	long per = n >= BLOCKS ? n / BLOCKS : 1, blocks = n >= BLOCKS ? BLOCKS : n;
	double v[BLOCKS], start = now_ns();

	for (long b = 0; b < blocks; b++) {
		double s = now_ns();

		for (long i = 0; i < per; i++)
			syscall(SYS_getppid);
		v[b] = (now_ns() - s) / per;
	}
	print_mean_median(now_ns() - start, per * blocks, v, blocks, 1);
	return 0;
}
