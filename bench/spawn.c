/*
 * Process churn: fork + exec + wait of a short-lived program, N times
 * (spawn N PROGRAM [ARGS...]). Prints the mean and the median wall time per spawn in µs: each
 * spawn is its own block (see blocks.h).
 */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blocks.h"

int main(int argc, char **argv)
{
	long long start;
	double *v;
	long n;

	if (argc < 3) {
		fprintf(stderr, "usage: spawn N PROGRAM [ARGS...]\n");
		return 2;
	}
	n = atol(argv[1]);
	if (n < 1 || !(v = calloc(n, sizeof(*v)))) {
		fprintf(stderr, "spawn: N must be a positive count\n");
		return 2;
	}
	start = now_ns();
	for (long i = 0; i < n; i++) {
		long long s = now_ns();
		int status;
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			execv(argv[2], argv + 2);
			_exit(127);
		}
		if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "%s failed\n", argv[2]);
			return 1;
		}
		v[i] = (double)(now_ns() - s);
	}
	print_mean_median((double)(now_ns() - start), n, v, n, 1e3);
	return 0;
}
