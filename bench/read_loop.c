/*
 * N 64-byte read()s from /dev/zero (argv[1], default 2e6; rounded down to whole blocks) in BLOCKS
 * blocks; prints the mean and the median block's ns per call (see blocks.h).
 */
#include <fcntl.h>
#include <unistd.h>

#include "blocks.h"

#define BLOCKS 100

int main(int argc, char **argv)
{
	long n = count_arg(argc, argv, 2000000);
	long per = n >= BLOCKS ? n / BLOCKS : 1, blocks = n >= BLOCKS ? BLOCKS : n;
	double v[BLOCKS];
	long long start;
	char buf[64];
	int fd = open("/dev/zero", O_RDONLY);

	if (fd < 0) {
		perror("/dev/zero");
		return 1;
	}
	start = now_ns();
	for (long b = 0; b < blocks; b++) {
		long long s = now_ns();

		for (long i = 0; i < per; i++)
			if (read(fd, buf, sizeof(buf)) != sizeof(buf))
				return 1;
		v[b] = (double)(now_ns() - s) / per;
	}
	print_mean_median((double)(now_ns() - start), per * blocks, v, blocks, 1);
	return 0;
}
