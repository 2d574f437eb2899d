//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// offcpu measures where the target's threads wait, by kernel call chain,
// in the kernel (BCC's offcputime): at sched_switch, a target thread that
// blocks (switched out in a state other than TASK_RUNNING) has its kernel
// stack stored in a stack map and the time stamped; when it is switched
// in again, the time it was off the CPU is added to its (stack, syscall)
// pair. A thread preempted while runnable waits on a run queue, not for
// an event: it is not counted here (the on-CPU sampler spreads that wait
// over its running stacks). The controller reads the totals and each
// thread's last wait (starts) to cut the time into its windows.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "../include/target.h"

#define MAX_FRAMES 127
#define TASK_DEAD 0x80

// counters
#define C_LOST 0    // no stack, or a map full
#define C_N 1

struct task_struct___ap {
	int pid;
	unsigned int __state;
} __attribute__((preserve_access_index));

struct pt_regs___ap {
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

// wait is what a blocked thread waits in: its kernel stack and the
// syscall it is in (-1: none).
struct wait {
	__s32 stack;
	__s32 nr;
};

// start is a thread's last wait: since at (bpf_ktime_get_ns, that is
// CLOCK_MONOTONIC), until end (0 while it lasts).
struct start {
	__u64 at;
	__u64 end;
	struct wait w;
};

struct total {
	__u64 ns;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_FRAMES * sizeof(__u64));
} stacks SEC(".maps");

// starts holds each thread's last wait, by thread id: kept after it ends,
// so that the controller can tell a wait that ended between its reads
// from one that ended before (LRU: the threads that exited make room).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct start);
} starts SEC(".maps");

// totals holds the waits that ended, by what they waited in.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct wait);
	__type(value, struct total);
} totals SEC(".maps");

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

// ended adds a wait that ended at now to its total.
static __always_inline void ended(struct start *s, __u64 now)
{
	struct total *t = bpf_map_lookup_elem(&totals, &s->w);
	__u64 d = now > s->at ? now - s->at : 0;
	if (t) {
		__sync_fetch_and_add(&t->ns, d);
		__sync_fetch_and_add(&t->count, 1);
		return;
	}
	struct total one = {.ns = d, .count = 1};
	if (bpf_map_update_elem(&totals, &s->w, &one, BPF_NOEXIST)) {
		t = bpf_map_lookup_elem(&totals, &s->w);
		if (t) {
			__sync_fetch_and_add(&t->ns, d);
			__sync_fetch_and_add(&t->count, 1);
		} else {
			bump(C_LOST);
		}
	}
}

// sched_switch(bool preempt, struct task_struct *prev, struct task_struct
// *next, ...): prev is the current task.
SEC("tp_btf/sched_switch")
int offcpu(__u64 *ctx)
{
	struct task_struct___ap *prev = (void *)ctx[1];
	struct task_struct___ap *next = (void *)ctx[2];
	__u64 now = bpf_ktime_get_ns();

	__u32 tid = next->pid;
	struct start *s = tid ? bpf_map_lookup_elem(&starts, &tid) : 0;
	if (s && !s->end) {
		ended(s, now);
		s->end = now;
	}

	if (ctx[0] & 1) // preempted: runnable
		return 0;
	unsigned int state = 0;
	if (bpf_core_field_exists(prev->__state))
		state = prev->__state;
	if (state == 0 || (state & TASK_DEAD) || !in_target())
		return 0;
	tid = bpf_get_current_pid_tgid();
	if (!tid)
		return 0;
	long id = bpf_get_stackid(ctx, &stacks, 0);
	if (id < 0) {
		bump(C_LOST);
		return 0;
	}
	struct start st = {.at = now, .end = 0, .w = {.stack = id, .nr = -1}};
	struct pt_regs___ap *regs = (void *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (regs)
		st.w.nr = (__s32)BPF_CORE_READ(regs, orig_ax);
	if (bpf_map_update_elem(&starts, &tid, &st, BPF_ANY))
		bump(C_LOST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
