/*
 * N getppid() calls (argv[1], default 5e6; rounded down to whole blocks) in BLOCKS blocks; prints
 * the mean and the median block's ns per call (see blocks.h).
 */
#include <sys/syscall.h>
#include <unistd.h>

#include "blocks.h"

#define BLOCKS 100

int main(int argc, char **argv)
{
	long n = count_arg(argc, argv, 5000000);
	long per = n >= BLOCKS ? n / BLOCKS : 1, blocks = n >= BLOCKS ? BLOCKS : n;
	double v[BLOCKS];
	long long start = now_ns();

	for (long b = 0; b < blocks; b++) {
		long long s = now_ns();

		for (long i = 0; i < per; i++)
			syscall(SYS_getppid);
		v[b] = (double)(now_ns() - s) / per;
	}
	print_mean_median((double)(now_ns() - start), per * blocks, v, blocks, 1);
	return 0;
}
