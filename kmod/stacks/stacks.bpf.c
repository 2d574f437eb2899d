//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// stacks aggregates cpu-clock samples by kernel call chain in the kernel:
// a perf_event program, attached to one sampling event per CPU, stores
// each sample's kernel stack in a stack map and counts it. Samples of
// tasks outside the target, and samples taken in user mode (no kernel
// stack), are counted apart.

#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>

#include "../include/target.h"

#define MAX_FRAMES 127

// counters
#define C_USER 0     // sample with no kernel stack
#define C_LOST 1     // stack or count map full
#define C_FILTERED 2 // task outside the target
#define C_N 3

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_FRAMES * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_N);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void bump(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &c);
	if (v)
		*v += 1;
}

SEC("perf_event")
int sample(struct bpf_perf_event_data *ctx)
{
	if (!in_target()) {
		bump(C_FILTERED);
		return 0;
	}
	long id = bpf_get_stackid(ctx, &stacks, 0);
	if (id == -14) { // -EFAULT: no kernel stack, a user-mode sample
		bump(C_USER);
		return 0;
	}
	if (id < 0) {
		bump(C_LOST);
		return 0;
	}
	__u32 key = id;
	__u64 *n = bpf_map_lookup_elem(&counts, &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(&counts, &key);
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			bump(C_LOST);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
