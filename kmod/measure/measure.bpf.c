//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// measure is autoprof's measurement model: every instrument program
// (fentry/fexit, kprobe/kretprobe, the raw_syscalls and sched tracepoints)
// records into the same maps, so that contexts nest across backends.
//
// Per thread a shadow stack holds the instrumented frames that are open.
// A calling context is interned as an id: (parent context, instrument) ->
// id, allocated from an atomic counter and inserted with BPF_NOEXIST; user
// space maps ids back to paths. Per context and per CPU: calls, inclusive
// and exclusive wall ns, inclusive and exclusive off-CPU ns and a log2
// histogram of inclusive wall time. Nothing takes a lock: per-CPU maps for
// the counters, the shadow stack is only touched by its own thread (and by
// sched_switch while that thread is switched out or switching).
//
// Every instrument program learns its instrument id from its BPF cookie.
// Hits in interrupt context are charged to the interrupted task: they are
// pushed on its shadow stack (nested under what it was doing, as perf
// charges kernel samples). A per-CPU guard makes a hit that interrupts one
// of these programs on the same CPU (NMI, or a nested instrumented
// function) a recursion miss.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define MAX_DEPTH 32
#define HIST 41

// instrument kinds, as in package measure
#define K_COUNT 1
#define K_EXIT 2
#define K_TIMER 3
#define K_TARGETS 4
#define K_SYSCALL 5

// filter flags
#define F_PIDS 1
#define F_CGROUP 2

// misses
#define M_RECURSION 0
#define M_DEPTH 1
#define M_MAPFULL 2
#define M_UNMATCHED 3
#define M_N 4

struct inst {
	__u32 live;
	__u32 kind;
	__u32 filter;
	__u32 nr;
	// indirect call operand: target = mem ? *(disp + base + index*scale) : base
	__u8 mem;
	__u8 base;  // pt_regs slot + 1, 0 for none
	__u8 index; // pt_regs slot + 1, 0 for none
	__u8 scale;
	__u32 pad;
	__s64 disp;
};

struct frame {
	__u32 ctx;
	__u32 inst;
	__u64 start;
	__u64 child;    // inclusive wall ns of instrumented children
	__u64 off_incl; // off-CPU ns in this frame and below
	__u64 off_excl; // off-CPU ns while this frame was on top
};

struct thread {
	__u32 depth;
	__u32 pad;
	__u64 out_at; // when the thread was switched out, 0 while it runs
	struct frame f[MAX_DEPTH];
};

struct ctx_stats {
	__u64 calls;
	__u64 incl;
	__u64 excl;
	__u64 off_incl;
	__u64 off_excl;
	__u64 hist[HIST];
};

struct ctx_key {
	__u32 parent;
	__u32 inst;
};

struct pid_key {
	__u32 inst;
	__u32 tgid;
};

struct target_key {
	__u32 ctx;
	__u32 pad;
	__u64 target;
};

// Sizes are placeholders: the loader sets every max_entries from the
// CPU count and its memory cap.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inst);
} insts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct pid_key);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct thread);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct thread);
} zero_thread SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct ctx_key);
	__type(value, __u32);
} ctxs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} next_ctx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ctx_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, struct target_key);
	__type(value, __u64);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, M_N);
	__type(key, __u32);
	__type(value, __u64);
} misses SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} busy SEC(".maps");

// hits counts, per instrument and CPU, every time one of its programs
// ran for an entry (a timer's call, a counter's hit, a syscall root's
// call), whatever task ran it: what the instrument costs, before its
// filter drops the hits of other tasks.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

// syscall nr -> instrument id of its root timer, 0 for none
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} syscalls SEC(".maps");

static __always_inline void hit(__u32 id)
{
	__u64 *h = bpf_map_lookup_elem(&hits, &id);
	if (h)
		*h += 1;
}

static __always_inline void miss(__u32 what)
{
	__u64 *m = bpf_map_lookup_elem(&misses, &what);
	if (m)
		*m += 1;
}

// guard_enter returns the CPU's guard, or NULL (a recursion miss) when a
// program of this model is already running on the CPU.
static __always_inline __u32 *guard_enter(void)
{
	__u32 zero = 0;
	__u32 *b = bpf_map_lookup_elem(&busy, &zero);
	if (!b)
		return 0;
	if (*b) {
		miss(M_RECURSION);
		return 0;
	}
	*b = 1;
	return b;
}

static __always_inline int wanted(__u32 id, struct inst *in)
{
	if (in->filter & F_PIDS) {
		struct pid_key k = { .inst = id, .tgid = bpf_get_current_pid_tgid() >> 32 };
		if (!bpf_map_lookup_elem(&pids, &k))
			return 0;
	}
	if ((in->filter & F_CGROUP) && bpf_current_task_under_cgroup(&cgroups, id) != 1)
		return 0;
	return 1;
}

static __always_inline struct thread *thread_of(__u32 tid, int create)
{
	struct thread *t = bpf_map_lookup_elem(&threads, &tid);
	if (t || !create)
		return t;
	__u32 zero = 0;
	struct thread *z = bpf_map_lookup_elem(&zero_thread, &zero);
	if (!z)
		return 0;
	bpf_map_update_elem(&threads, &tid, z, BPF_NOEXIST);
	t = bpf_map_lookup_elem(&threads, &tid);
	if (!t)
		miss(M_MAPFULL);
	return t;
}

// intern returns the id of the context (parent, inst), 0 when there is no
// room for a new one.
static __always_inline __u32 intern(__u32 parent, __u32 inst)
{
	struct ctx_key k = { .parent = parent, .inst = inst };
	__u32 *id = bpf_map_lookup_elem(&ctxs, &k);
	if (id)
		return *id;
	__u32 zero = 0;
	__u32 *next = bpf_map_lookup_elem(&next_ctx, &zero);
	if (!next)
		return 0;
	__u32 n = __sync_fetch_and_add(next, 1) + 1;
	if (!bpf_map_lookup_elem(&stats, &n)) { // past the end of stats
		miss(M_MAPFULL);
		return 0;
	}
	if (bpf_map_update_elem(&ctxs, &k, &n, BPF_NOEXIST)) {
		// another CPU interned it first, or the map is full
		id = bpf_map_lookup_elem(&ctxs, &k);
		if (id)
			return *id;
		miss(M_MAPFULL);
		return 0;
	}
	return n;
}

static __always_inline __u32 top_ctx(struct thread *t)
{
	__u32 d = t ? t->depth : 0;
	if (d == 0 || d > MAX_DEPTH)
		return 0;
	return t->f[(d - 1) & (MAX_DEPTH - 1)].ctx;
}

static __always_inline int inst_live(__u32 id)
{
	struct inst *in = bpf_map_lookup_elem(&insts, &id);
	return in && in->live;
}

// top_live reports whether t has no open frame, or its top frame's
// instrument is live.
static __always_inline int top_live(struct thread *t)
{
	__u32 d = t->depth;
	if (d == 0 || d > MAX_DEPTH)
		return 1;
	return inst_live(t->f[(d - 1) & (MAX_DEPTH - 1)].inst);
}

struct drop_ctx {
	struct thread *t;
};

// drop_one pops t's top frame if its instrument was withdrawn; it stops
// bpf_loop (returns 1) at the first live one.
static int drop_one(__u32 i, struct drop_ctx *c)
{
	struct thread *t = c->t;
	if (top_live(t))
		return 1;
	t->depth -= 1;
	miss(M_UNMATCHED);
	return 0;
}

// drop_stale pops frames on top whose instrument was withdrawn: their
// return will never be seen. The top frame is almost always live, and
// checked inline; the rare rest goes through bpf_loop, whose body the
// verifier checks once instead of once for each of MAX_DEPTH iterations
// (every fentry program is verified when its instrument goes in, and
// that time is autoprof's).
static __always_inline void drop_stale(struct thread *t)
{
	if (top_live(t))
		return;
	struct drop_ctx c = { .t = t };
	bpf_loop(MAX_DEPTH, drop_one, &c, 0);
}

static __always_inline void count(__u32 ctx)
{
	struct ctx_stats *s = bpf_map_lookup_elem(&stats, &ctx);
	if (s)
		s->calls += 1;
}

static __always_inline void push(struct thread *t, __u32 id)
{
	drop_stale(t);
	__u32 d = t->depth;
	if (d >= MAX_DEPTH) {
		miss(M_DEPTH);
		return;
	}
	__u32 ctx = intern(top_ctx(t), id);
	if (!ctx)
		return;
	struct frame *f = &t->f[d & (MAX_DEPTH - 1)];
	f->ctx = ctx;
	f->inst = id;
	f->child = 0;
	f->off_incl = 0;
	f->off_excl = 0;
	t->depth = d + 1;
	f->start = bpf_ktime_get_ns();
}

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 n = 0;
	for (int i = 0; i < HIST - 1 && v; i++) {
		v >>= 1;
		n++;
	}
	return n;
}

struct find_ctx {
	struct thread *t;
	__u32 id;
	__u32 depth;
	__u32 at;
	__u32 found;
};

// find_one looks at the frame i below the top for instrument id's; it
// stops bpf_loop (returns 1) where it is, or where the frames end.
static int find_one(__u32 i, struct find_ctx *c)
{
	if (i >= c->depth)
		return 1;
	__u32 k = (c->depth - 1 - i) & (MAX_DEPTH - 1);
	if (c->t->f[k].inst != c->id)
		return 0;
	c->at = k;
	c->found = 1;
	return 1;
}

// pop closes the frame of instrument id, and frames above it whose returns
// were lost (unmatched). A return with no frame of id is unmatched. The
// frame is almost always the top one, checked inline; the frames below
// are searched through bpf_loop (see drop_stale).
static __always_inline void pop(struct thread *t, __u32 id)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 d = t->depth;
	if (d == 0 || d > MAX_DEPTH) {
		miss(M_UNMATCHED);
		return;
	}
	__u32 at = d - 1;
	if (t->f[at & (MAX_DEPTH - 1)].inst != id) {
		struct find_ctx c = { .t = t, .id = id, .depth = d };
		bpf_loop(MAX_DEPTH, find_one, &c, 0);
		if (!c.found) {
			miss(M_UNMATCHED);
			return;
		}
		at = c.at;
		miss(M_UNMATCHED); // the frames above it
	}
	struct frame *f = &t->f[at & (MAX_DEPTH - 1)];
	__u64 incl = now - f->start;
	__u64 excl = incl > f->child ? incl - f->child : 0;
	struct ctx_stats *s = bpf_map_lookup_elem(&stats, &f->ctx);
	if (s) {
		s->calls += 1;
		s->incl += incl;
		s->excl += excl;
		s->off_incl += f->off_incl;
		s->off_excl += f->off_excl;
		__u32 b = log2_bucket(incl);
		if (b < HIST)
			s->hist[b] += 1;
	}
	t->depth = at;
	if (at > 0) {
		struct frame *p = &t->f[(at - 1) & (MAX_DEPTH - 1)];
		p->child += incl;
		p->off_incl += f->off_incl;
	}
}

#define NREGS 21 // the slots of x86-64 struct pt_regs

// reg returns pt_regs slot r-1 of the copy regs; 0 for r == 0.
static __always_inline __u64 reg(__u64 *regs, __u8 r)
{
	if (r == 0 || r > NREGS)
		return 0;
	return regs[(r - 1) & 31];
}

static __always_inline void capture(struct thread *t, __u32 id, struct inst *in, void *pt_regs)
{
	// The verifier allows only constant offsets into the context: read
	// the registers through a copy.
	__u64 regs[32] = {};
	if (bpf_probe_read_kernel(regs, NREGS * 8, pt_regs))
		return;
	__u64 target = in->disp;
	if (in->base)
		target += reg(regs, in->base);
	if (in->index)
		target += reg(regs, in->index) * in->scale;
	if (in->mem) {
		__u64 addr = target;
		target = 0;
		if (bpf_probe_read_kernel(&target, sizeof(target), (void *)addr))
			return;
	}
	__u32 ctx = intern(top_ctx(t), id);
	if (!ctx)
		return;
	count(ctx);
	struct target_key k = { .ctx = ctx, .target = target };
	__u64 *n = bpf_map_lookup_elem(&targets, &k);
	if (n) {
		*n += 1;
		return;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&targets, &k, &one, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(&targets, &k);
		if (n)
			*n += 1;
		else
			miss(M_MAPFULL);
	}
}

static __always_inline int on_entry(__u64 cookie, void *regs)
{
	__u32 id = cookie;
	struct inst *in = bpf_map_lookup_elem(&insts, &id);
	if (!in || !in->live)
		return 0;
	hit(id);
	if (!wanted(id, in))
		return 0;
	__u32 *g = guard_enter();
	if (!g)
		return 0;
	__u32 tid = bpf_get_current_pid_tgid();
	struct thread *t = thread_of(tid, in->kind == K_TIMER);
	switch (in->kind) {
	case K_COUNT:
		count(intern(top_ctx(t), id));
		break;
	case K_TIMER:
		if (t)
			push(t, id);
		break;
	case K_TARGETS:
		if (regs)
			capture(t, id, in, regs);
		break;
	}
	*g = 0;
	return 0;
}

static __always_inline int on_return(__u64 cookie)
{
	__u32 id = cookie;
	struct inst *in = bpf_map_lookup_elem(&insts, &id);
	if (!in || !in->live || !wanted(id, in))
		return 0;
	__u32 *g = guard_enter();
	if (!g)
		return 0;
	__u32 tid = bpf_get_current_pid_tgid();
	struct thread *t = thread_of(tid, 0);
	if (in->kind == K_EXIT)
		count(intern(top_ctx(t), id));
	else if (in->kind == K_TIMER) {
		if (t)
			pop(t, id);
		else
			miss(M_UNMATCHED);
	}
	*g = 0;
	return 0;
}

SEC("fentry/placeholder")
int fentry_hit(__u64 *ctx)
{
	return on_entry(bpf_get_attach_cookie(ctx), 0);
}

SEC("fexit/placeholder")
int fexit_hit(__u64 *ctx)
{
	return on_return(bpf_get_attach_cookie(ctx));
}

// COOKIE_RETURN marks the kprobe at a call site's return address: it
// closes the frame that the kprobe on the call instruction (same id)
// opened.
#define COOKIE_RETURN (1ULL << 63)

SEC("kprobe/placeholder")
int kprobe_hit(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	if (cookie & COOKIE_RETURN)
		return on_return(cookie);
	return on_entry(cookie, ctx);
}

SEC("kretprobe/placeholder")
int kretprobe_hit(struct pt_regs *ctx)
{
	return on_return(bpf_get_attach_cookie(ctx));
}

// Kernel structures, read with CO-RE relocations against the running
// kernel's BTF (the ___ap suffix is dropped when matching).
struct task_struct___ap {
	int pid;
	unsigned int __state;
} __attribute__((preserve_access_index));

struct pt_regs___ap {
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

// sys_enter(struct pt_regs *regs, long id) opens the root frame of an
// instrumented syscall. A thread enters a syscall from user space, so any
// frame still open is stale (a return that was never seen): it is dropped.
SEC("tp_btf/sys_enter")
int sys_enter(__u64 *ctx)
{
	__u32 nr = ctx[1];
	__u32 *id = bpf_map_lookup_elem(&syscalls, &nr);
	if (!id || !*id)
		return 0;
	__u32 iid = *id;
	struct inst *in = bpf_map_lookup_elem(&insts, &iid);
	if (!in || !in->live)
		return 0;
	hit(iid);
	if (!wanted(iid, in))
		return 0;
	__u32 *g = guard_enter();
	if (!g)
		return 0;
	struct thread *t = thread_of(bpf_get_current_pid_tgid(), 1);
	if (t) {
		for (__u32 i = 0; i < MAX_DEPTH && i < t->depth; i++)
			miss(M_UNMATCHED);
		t->depth = 0;
		push(t, iid);
	}
	*g = 0;
	return 0;
}

// sys_exit(struct pt_regs *regs, long ret) closes it.
SEC("tp_btf/sys_exit")
int sys_exit(__u64 *ctx)
{
	struct pt_regs___ap *regs = (void *)ctx[0];
	__u32 nr = regs->orig_ax;
	__u32 *id = bpf_map_lookup_elem(&syscalls, &nr);
	if (!id || !*id)
		return 0;
	__u32 iid = *id;
	struct thread *t = thread_of(bpf_get_current_pid_tgid(), 0);
	if (!t || t->depth == 0)
		return 0;
	__u32 *g = guard_enter();
	if (!g)
		return 0;
	pop(t, iid);
	*g = 0;
	return 0;
}

// sched_switch(bool preempt, struct task_struct *prev, struct task_struct
// *next, ...) stamps the switch-out of prev (the current task) where it
// blocks, and charges next's time off the CPU to the frame on top of its
// stack. A task switched out still runnable (preempted, or yielding in
// cond_resched: its state is TASK_RUNNING, 0) waits on a run queue, not
// for an event: that wait stays in its frames' on-CPU time, as the stack
// sampler spreads it over the on-CPU samples, so that preemption is never
// reported as blocking.
SEC("tp_btf/sched_switch")
int sched_switch(__u64 *ctx)
{
	struct task_struct___ap *prev = (void *)ctx[1];
	struct task_struct___ap *next = (void *)ctx[2];
	__u32 *g = guard_enter();
	if (!g)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	int runnable = (ctx[0] & 1) != 0;
	if (!runnable && bpf_core_field_exists(prev->__state))
		runnable = prev->__state == 0;
	struct thread *t = thread_of(bpf_get_current_pid_tgid(), 0);
	if (t && t->depth && !runnable)
		t->out_at = now;
	__u32 tid = next->pid;
	t = tid ? thread_of(tid, 0) : 0;
	if (t && t->out_at) {
		__u32 d = t->depth;
		if (d > 0 && d <= MAX_DEPTH) {
			struct frame *f = &t->f[(d - 1) & (MAX_DEPTH - 1)];
			f->off_incl += now - t->out_at;
			f->off_excl += now - t->out_at;
		}
		t->out_at = 0;
	}
	*g = 0;
	return 0;
}

// sched_process_exit(struct task_struct *p) forgets the exiting thread.
SEC("tp_btf/sched_process_exit")
int thread_exit(__u64 *ctx)
{
	__u32 tid = bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&threads, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
