// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Reference for benchmarks: the cheapest possible tp_btf/sys_enter program. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("tp_btf/sys_enter")
int BPF_PROG(empty_sys_enter, struct pt_regs *regs, long id)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
