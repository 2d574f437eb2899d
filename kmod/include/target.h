/* SPDX-License-Identifier: GPL-2.0 */
/*
 * target.h: the target filter of the stack sampler (stacks.bpf.c) and the
 * off-CPU program (offcpu.bpf.c): tgids in pids, a cgroup in cgroup, the
 * F_* flags in config (internal/bpfmaps.SetTargetFilter sets them).
 */
#ifndef AUTOPROF_TARGET_H
#define AUTOPROF_TARGET_H

#define F_PIDS 1
#define F_CGROUP 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} config SEC(".maps");

/* in_target reports whether the current task belongs to the target. */
static __always_inline int in_target(void)
{
	__u32 zero = 0;
	__u32 *flags = bpf_map_lookup_elem(&config, &zero);

	if (!flags)
		return 0;
	if (*flags & F_PIDS) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;

		if (!bpf_map_lookup_elem(&pids, &tgid))
			return 0;
	}
	if ((*flags & F_CGROUP) && bpf_current_task_under_cgroup(&cgroup, 0) != 1)
		return 0;
	return 1;
}

#endif
