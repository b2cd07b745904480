// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Reference for benchmarks (not part of the product): the cheapest possible
 * tp_btf/sys_enter and tp_btf/sys_exit programs. `make bench` attaches
 * sys_enter alone (the like-for-like reference for ebpfh, which hooks only
 * sys_enter) and both (what a tracer that hooks entry and exit pays at least).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* TP_PROTO(struct pt_regs *regs, long id) */
SEC("tp_btf/sys_enter")
int BPF_PROG(empty_sys_enter, struct pt_regs *regs, long id)
{
	return 0;
}

/* TP_PROTO(struct pt_regs *regs, long ret) */
SEC("tp_btf/sys_exit")
int BPF_PROG(empty_sys_exit, struct pt_regs *regs, long ret)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
