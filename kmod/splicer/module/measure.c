// SPDX-License-Identifier: GPL-2.0
/*
 * measure.c - what the trampolines call: per-thread shadow stacks,
 * interned calling contexts, per-CPU statistics, and the scheduler
 * tracepoints that charge off-CPU time.
 *
 * The model is the one of autoprof's BPF backends (kmod/measure): a
 * thread's instrumented frames form its calling context; a context is the
 * pair (parent context, instrument), interned as a small id; statistics
 * are kept per context and per CPU. Hits in interrupt context are charged
 * to the interrupted task. A per-CPU guard turns a hit that interrupts a
 * handler on the same CPU (or any hit in NMI) into a recursion miss.
 *
 * No return address is ever replaced: a timer's frame begins at its
 * function's entry window, keyed by the address of the return address
 * (the stack pointer there), and ends at whichever of the function's
 * return windows runs with the stack pointer at that address. So every
 * unwinder (/proc/PID/stack, perf, BPF, livepatch's reliable check) and
 * _RET_IP_ see the real caller, and no task can ever return into the
 * module. A frame whose end was not seen (its return windows withdrawn
 * while the task slept inside, a task that died inside) is dropped as a
 * miss when it is found stale: under a frame that ends, at the same place
 * as a new one, or when its instrument is gone. A task's shadow stack goes
 * only once the task is freed (sched_process_free, where kretprobes free
 * theirs), never while it may still run.
 *
 * Nothing here sleeps, takes a lock or calls a function that can be
 * traced; every function is notrace and on the kprobe blacklist.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/vmalloc.h>
#include <linux/hash.h>
#include <linux/kprobes.h>
#include <linux/tracepoint.h>
#include <linux/sched/clock.h>
#include <linux/sched/task_stack.h>
#include <linux/rcupdate.h>
#include <linux/preempt.h>
#include <linux/math64.h>
#include <asm/tsc.h>
#include <asm/msr.h>

#include "splice.h"
#include "delta.h"

#define AP_TOMB		((struct task_struct *)1UL)
#define AP_PROBES	64

struct ap_frame {
	u64 start;		/* ap_now() at entry */
	u64 child;		/* inclusive time of instrumented children */
	u64 off_incl;		/* off-CPU time in this frame and below */
	u64 off_excl;		/* off-CPU time while this frame was on top */
	unsigned long *slot;	/* where the return address is: the frame's key */
	u32 ctx;		/* the context children see */
	u32 inst;
	u32 gen;		/* the session that pushed it */
	u32 pad;
};

struct ap_thread {
	struct task_struct *task;	/* key: NULL empty, AP_TOMB freed */
	u32 depth;
	u32 pad;
	u64 out_at;			/* switched out at, 0 while running */
	struct ap_frame f[AP_MAX_DEPTH];
};

static struct ap_thread *ap_threads;
static u32 ap_threads_mask;
static u32 *ap_ctx_hash;		/* context ids, by hash of their key */
static u32 ap_ctx_hash_mask;

static void *ap_mem;			/* the area user space maps */
static unsigned long ap_mem_size, ap_ctx_off, ap_cpu_off, ap_stride;
static struct ap_header *ap_hdr;
static struct ap_ctx *ap_ctxtab;

static DEFINE_PER_CPU(int, ap_busy);
DEFINE_PER_CPU(struct task_struct *, ap_root_task);
DEFINE_PER_CPU(u64, ap_misses[AP_M_N]);
DEFINE_PER_CPU(u64, ap_handler_time);

static struct tracepoint *ap_tp_switch, *ap_tp_free;

/*
 * The clock: the TSC where it is constant and synchronized (two rdtscs
 * per timed call, converted to ns when charged), else sched_clock().
 */
#define AP_TSC_SHIFT 22
static bool ap_tsc;
static u32 ap_tsc_mult;

static __always_inline u64 ap_now(void)
{
	return ap_tsc ? rdtsc() : sched_clock();
}

static __always_inline u64 ap_ns(u64 d)
{
	return ap_tsc ? mul_u64_u32_shr(d, ap_tsc_mult, AP_TSC_SHIFT) : d;
}

static void ap_clock_init(void)
{
	u64 mult;

	if (!boot_cpu_has(X86_FEATURE_CONSTANT_TSC) || check_tsc_unstable() || !tsc_khz)
		return;
	mult = div_u64((u64)NSEC_PER_MSEC << AP_TSC_SHIFT, tsc_khz);
	if (mult > U32_MAX)
		return;
	ap_tsc_mult = mult;
	ap_tsc = true;
}

void *ap_area(void) { return ap_mem; }
unsigned long ap_area_size(void) { return ap_mem_size; }
unsigned long ap_cpu_offset(void) { return ap_cpu_off; }
unsigned long ap_cpu_stride(void) { return ap_stride; }

/* ap_thread_find returns task's shadow stack, making one if create. */
static notrace struct ap_thread *ap_thread_find(struct task_struct *task, bool create)
{
	u32 h = hash_ptr(task, 32), i;
	struct ap_thread *free = NULL;
	struct task_struct *old = NULL;

	for (i = 0; i < AP_PROBES; i++) {
		struct ap_thread *t = &ap_threads[(h + i) & ap_threads_mask];
		struct task_struct *k = READ_ONCE(t->task);

		if (k == task)
			return t;
		if (k == AP_TOMB && !free) {
			free = t;
			old = k;
		}
		if (!k) {
			if (!free) {
				free = t;
				old = k;
			}
			break;
		}
	}
	if (!create || !free || (task->flags & PF_EXITING))
		return NULL;
	/* Only the task itself claims its slot: no other claim races for it. */
	if (cmpxchg(&free->task, old, task) != old)
		return NULL;
	free->depth = 0;
	free->out_at = 0;
	return free;
}
NOKPROBE_SYMBOL(ap_thread_find);

/*
 * ap_intern returns the id of context (parent, inst), 0 when full. The
 * hash table holds context ids; a context's key is its entry in the
 * context table, written before the id is published.
 */
static notrace u32 ap_intern(u32 parent, u32 inst)
{
	u32 h = hash_64((u64)parent << 32 | inst, 32), i, id = 0;

	for (i = 0; i < AP_PROBES; i++, h++) {
		u32 *slot = &ap_ctx_hash[h & ap_ctx_hash_mask];
		u32 e = READ_ONCE(*slot);

		if (!e) {
			if (!id) {
				id = atomic_inc_return((atomic_t *)&ap_hdr->nctx);
				if (id >= ap_max_ctxs) {
					atomic_dec((atomic_t *)&ap_hdr->nctx);
					break;
				}
				WRITE_ONCE(ap_ctxtab[id].parent, parent);
				WRITE_ONCE(ap_ctxtab[id].inst, inst);
				smp_wmb();
			}
			e = cmpxchg(slot, 0, id);
			if (!e)
				return id;
		}
		if (READ_ONCE(ap_ctxtab[e].parent) == parent && READ_ONCE(ap_ctxtab[e].inst) == inst) {
			if (id)	/* lost a race: the id stays unused */
				WRITE_ONCE(ap_ctxtab[id].inst, 0);
			return e;
		}
	}
	ap_miss(AP_M_MAPFULL);
	return 0;
}
NOKPROBE_SYMBOL(ap_intern);

static __always_inline struct ap_stats *ap_stats_of(u32 ctx)
{
	return (struct ap_stats *)(ap_mem + ap_cpu_off +
				   raw_smp_processor_id() * ap_stride) + ctx;
}

/* ap_live reports whether instrument id is live now (whatever its filter). */
static __always_inline bool ap_live(u32 id)
{
	struct ap_inst *in = ap_inst_of(id);

	return in && READ_ONCE(in->state) == AP_LIVE;
}

/*
 * ap_trim drops the frames at the top of the thread's shadow stack whose
 * instrument was withdrawn (or whose session ended) while they were open:
 * their ends will not be seen, and they must not be the parent of what
 * comes next. Those of this session are misses; an ended session's are
 * not this one's concern.
 */
static __always_inline void ap_trim(struct ap_thread *t)
{
	u32 d = t->depth, gen = READ_ONCE(ap_gen);

	while (d && (t->f[d - 1].gen != gen || !ap_live(t->f[d - 1].inst))) {
		if (t->f[d - 1].gen == gen)
			ap_miss(AP_M_UNMATCHED);
		d--;
	}
	WRITE_ONCE(t->depth, d);
}

/* ap_top returns the context the thread's next frame would sit in. */
static __always_inline u32 ap_top(struct ap_thread *t)
{
	struct ap_frame *f;

	if (!t || !t->depth)
		return 0;
	f = &t->f[t->depth - 1];
	return f->gen == READ_ONCE(ap_gen) ? f->ctx : 0;
}

/*
 * ap_set_root tells the counter fast path whether the current task sits in
 * the root context: it may count there without calling in.
 */
static __always_inline void ap_set_root(struct ap_thread *t)
{
	this_cpu_write(ap_root_task, (ap_top(t) ? NULL : current));
}

static __always_inline bool ap_wanted(struct ap_inst *in)
{
	pid_t tgid;
	u32 i;

	if (!in->npids)
		return true;
	tgid = current->tgid;
	for (i = 0; i < in->npids && i < AP_MAX_PIDS; i++)
		if (in->pids[i] == tgid)
			return true;
	return false;
}

static __always_inline struct ap_inst *ap_live_inst(u32 id)
{
	struct ap_inst *in = ap_inst_of(id);

	if (!in || READ_ONCE(in->state) != AP_LIVE || !ap_wanted(in))
		return NULL;
	return in;
}

/* ap_guard enters a handler: false (a miss) when one runs on this CPU. */
static __always_inline bool ap_guard(void)
{
	if (this_cpu_inc_return(ap_busy) == 1)
		return true;
	ap_miss(AP_M_RECURSION);
	return false;
}

/* ap_leave ends a handler that began at t0. */
static __always_inline void ap_leave(u64 t0)
{
	this_cpu_add(ap_handler_time, ap_now() - t0);
	this_cpu_dec(ap_busy);
	preempt_enable_notrace();
}

/*
 * ap_unwind_to drops a frame of instrument id at slot, and every frame
 * above it: the same instrument entered again with the return address at
 * the same place means its last end went unseen.
 */
static __always_inline void ap_unwind_to(struct ap_thread *t, u32 id, unsigned long *slot)
{
	int i;

	for (i = (int)t->depth - 1; i >= 0; i--) {
		if (t->f[i].slot == slot && t->f[i].inst == id) {
			this_cpu_add(ap_misses[AP_M_UNMATCHED], t->depth - i);
			WRITE_ONCE(t->depth, i);
			return;
		}
	}
}

/*
 * ap_drop_returned drops the frames at the top of the thread's shadow
 * stack that a new entry at slot shows to have ended unseen, so that they
 * are not its parent: on the same stack, a frame keyed below slot (its
 * function's return address was popped before the new one was pushed at
 * or above it); and a frame of an interrupt (keyed off the task's stack)
 * once an entry runs on the task's stack again, the interrupt being over.
 * A tail call keeps its caller's slot: equal slots stay, and a frame on
 * the task's stack stays under an interrupt's entry.
 */
static __always_inline void ap_drop_returned(struct ap_thread *t, unsigned long *slot)
{
	bool task = object_is_on_stack(slot);
	u32 d = t->depth, gen = READ_ONCE(ap_gen);

	while (d) {
		struct ap_frame *f = &t->f[d - 1];

		if (object_is_on_stack(f->slot) == task) {
			if (f->slot >= slot)
				break;
		} else if (!task) {
			break;
		}
		if (f->gen == gen)
			ap_miss(AP_M_UNMATCHED);
		d--;
	}
	WRITE_ONCE(t->depth, d);
}

/*
 * ap_enter is the entry handler of timers and exit counters, called by
 * ap_stub_enter with the instrument id and the address of the instrumented
 * function's return address: the key of the frame it pushes.
 */
__visible notrace void ap_enter(u32 id, unsigned long *slot)
{
	struct ap_inst *in;
	struct ap_thread *t;
	struct ap_frame *f;
	u64 t0;
	u32 ctx;

	if (in_nmi()) {
		ap_miss(AP_M_RECURSION);
		return;
	}
	preempt_disable_notrace();
	t0 = ap_now();
	if (!ap_guard())
		goto out;
	in = ap_live_inst(id);
	if (!in)
		goto out;
	t = ap_thread_find(current, true);
	if (!t) {
		ap_miss(AP_M_MAPFULL);
		goto out;
	}
	ap_trim(t);
	ap_drop_returned(t, slot);
	ap_unwind_to(t, id, slot);
	if (t->depth >= AP_MAX_DEPTH) {
		ap_miss(AP_M_DEPTH);
		goto out;
	}
	ctx = ap_top(t);
	if (in->kind == AP_TIMER) {
		ctx = ap_intern(ctx, id);
		if (!ctx)
			goto out;
	}
	f = &t->f[t->depth];
	f->ctx = ctx;
	f->inst = id;
	f->gen = ap_gen;
	f->child = 0;
	f->off_incl = 0;
	f->off_excl = 0;
	f->slot = slot;
	barrier();
	WRITE_ONCE(t->depth, t->depth + 1);
	ap_set_root(t);
	f->start = ap_now();
out:
	ap_leave(t0);
}
NOKPROBE_SYMBOL(ap_enter);

/* ap_charge records the end of frame f, which was at index at. */
static notrace void ap_charge(struct ap_thread *t, struct ap_frame *f, u32 at, u64 now)
{
	struct ap_frame *p = at ? &t->f[at - 1] : NULL;
	struct ap_inst *in;
	struct ap_stats *s;
	u64 incl, excl;
	u32 ctx;

	if (f->gen != ap_gen)
		return;
	in = ap_inst_of(f->inst);
	if (!in || READ_ONCE(in->state) != AP_LIVE) {
		ap_miss(AP_M_UNMATCHED);
		return;
	}
	if (in->kind == AP_EXIT) {
		/* A transparent frame: its time belongs to the frame below. */
		ctx = ap_intern(f->ctx, f->inst);
		if (ctx)
			ap_stats_of(ctx)->calls++;
		if (p) {
			p->child += f->child;
			p->off_incl += f->off_incl;
			p->off_excl += f->off_excl;
		}
		return;
	}
	incl = ap_delta(now, f->start);
	excl = ap_excl(incl, f->child);
	s = ap_stats_of(f->ctx);
	s->calls++;
	s->incl += ap_ns(incl);
	s->excl += ap_ns(excl);
	s->off_incl += ap_ns(f->off_incl);
	s->off_excl += ap_ns(f->off_excl);
	s->hist[min_t(u32, fls64(ap_ns(incl)), AP_HIST - 1)]++;
	if (p) {
		p->child += incl;
		p->off_incl += f->off_incl;
	}
}
NOKPROBE_SYMBOL(ap_charge);

/*
 * ap_exit is the handler of return windows, called by ap_stub_exit with
 * the stack pointer at the return (or tail call): the frames keyed by it
 * end, the ones above them went stale.
 */
__visible notrace void ap_exit(unsigned long *slot)
{
	struct ap_thread *t;
	struct ap_frame f;
	u64 t0;
	int i, d;

	if (in_nmi())
		return;	/* no frame begins in NMI */
	preempt_disable_notrace();
	t0 = ap_now();
	if (this_cpu_inc_return(ap_busy) != 1) {
		/*
		 * An interrupt inside a handler on this CPU: the handler may be
		 * changing this very task's shadow stack. The frames stay; a
		 * later entry or exit finds them stale.
		 */
		ap_miss(AP_M_RECURSION);
		goto out;
	}
	t = ap_thread_find(current, false);
	for (i = t ? (int)t->depth - 1 : -1; i >= 0; i--)
		if (t->f[i].slot == slot)
			break;
	if (i < 0)
		goto out;	/* no frame began here: its entry was a miss */
	for (d = i + 1; d < (int)t->depth; d++)
		if (t->f[d].gen == READ_ONCE(ap_gen))
			ap_miss(AP_M_UNMATCHED);	/* ended unseen above it */
	while (i >= 0 && t->f[i].slot == slot) {
		f = t->f[i];
		WRITE_ONCE(t->depth, i);
		ap_charge(t, &f, i, t0);
		i--;
	}
	ap_set_root(t);
out:
	ap_leave(t0);
}
NOKPROBE_SYMBOL(ap_exit);

/* ap_count is the slow path of counters: outside the root context, or filtered. */
__visible notrace void ap_count(u32 id)
{
	struct ap_thread *t;
	u32 ctx;
	u64 t0;

	if (in_nmi()) {
		ap_miss(AP_M_RECURSION);
		return;
	}
	preempt_disable_notrace();
	t0 = ap_now();
	if (!ap_guard())
		goto out;
	if (!ap_live_inst(id))
		goto out;
	t = ap_thread_find(current, false);
	if (t)
		ap_trim(t);
	ctx = ap_intern(ap_top(t), id);
	if (ctx)
		ap_stats_of(ctx)->calls++;
	ap_set_root(t);
out:
	ap_leave(t0);
}
NOKPROBE_SYMBOL(ap_count);

/*
 * sched_switch: stamp prev's switch-out where it blocks, charge next's time
 * off the CPU. A task switched out still runnable (preempted, or yielding
 * in cond_resched with its state TASK_RUNNING) waits on a run queue, not
 * for an event: that wait stays in its frames' on-CPU time, as in the BPF
 * backends (measure.bpf.c), so that preemption is never reported as
 * blocking.
 */
static notrace void ap_on_switch(void *data, bool preempt, struct task_struct *prev,
				 struct task_struct *next, unsigned int prev_state)
{
	struct ap_thread *t;
	u64 now;

	this_cpu_write(ap_root_task, NULL);
	now = ap_now();
	if (!ap_guard())
		goto out;
	t = ap_thread_find(prev, false);
	if (t && t->depth && !preempt && prev_state != TASK_RUNNING)
		t->out_at = now;
	t = ap_thread_find(next, false);
	if (t && t->out_at) {
		if (t->depth) {
			struct ap_frame *f = &t->f[t->depth - 1];
			u64 off = ap_delta(now, t->out_at);

			f->off_incl += off;
			f->off_excl += off;
		}
		t->out_at = 0;
	}
out:
	this_cpu_add(ap_handler_time, ap_now() - now);
	this_cpu_dec(ap_busy);
}
NOKPROBE_SYMBOL(ap_on_switch);

/*
 * sched_process_free: the task is gone (its last reference is being
 * dropped, after RCU), so its shadow stack can go: a slot freed any
 * earlier could be claimed by a task whose frames it still holds.
 */
static notrace void ap_on_free(void *data, struct task_struct *p)
{
	struct ap_thread *t;

	t = ap_thread_find(p, false);
	if (t) {
		WRITE_ONCE(t->depth, 0);
		smp_store_release(&t->task, AP_TOMB);
	}
}
NOKPROBE_SYMBOL(ap_on_free);

static void ap_find_tp(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sched_switch"))
		ap_tp_switch = tp;
	else if (!strcmp(tp->name, "sched_process_free"))
		ap_tp_free = tp;
}

/* ap_handler_ns returns the time spent in the handlers so far, all CPUs. */
u64 ap_handler_ns(void)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu(ap_handler_time, cpu);
	return ap_ns(sum);
}

/* ap_measure_reset clears contexts, statistics and misses for a new session. */
void ap_measure_reset(void)
{
	int cpu, i;

	WRITE_ONCE(ap_gen, ap_gen + 1);
	/* No handler still works with the old generation: they run preempt-off. */
	synchronize_rcu();
	for_each_possible_cpu(cpu)
		for (i = 0; i < AP_M_N; i++)
			per_cpu(ap_misses[i], cpu) = 0;
	memset(ap_ctx_hash, 0, (ap_ctx_hash_mask + 1) * sizeof(*ap_ctx_hash));
	memset(ap_mem, 0, ap_mem_size);
	ap_hdr->magic = AP_MAGIC;
	ap_hdr->gen = ap_gen;
}

int ap_measure_init(void)
{
	u32 nthreads = roundup_pow_of_two(ap_max_threads);
	u32 nhash = roundup_pow_of_two(2 * ap_max_ctxs);
	int err;

	ap_threads = vzalloc(array_size(nthreads, sizeof(*ap_threads)));
	ap_ctx_hash = vzalloc(array_size(nhash, sizeof(*ap_ctx_hash)));
	ap_ctx_off = PAGE_SIZE;
	ap_cpu_off = PAGE_ALIGN(ap_ctx_off + ap_max_ctxs * sizeof(struct ap_ctx));
	ap_stride = PAGE_ALIGN(ap_max_ctxs * sizeof(struct ap_stats));
	ap_mem_size = ap_cpu_off + nr_cpu_ids * ap_stride;
	ap_mem = vmalloc_user(ap_mem_size);
	if (!ap_threads || !ap_ctx_hash || !ap_mem) {
		err = -ENOMEM;
		goto fail;
	}
	ap_threads_mask = nthreads - 1;
	ap_ctx_hash_mask = nhash - 1;
	ap_hdr = ap_mem;
	ap_ctxtab = ap_mem + ap_ctx_off;
	ap_hdr->magic = AP_MAGIC;
	ap_clock_init();
	pr_info("timing with %s\n", ap_tsc ? "the TSC" : "sched_clock()");

	for_each_kernel_tracepoint(ap_find_tp, NULL);
	if (!ap_tp_switch || !ap_tp_free) {
		pr_err("no sched_switch or sched_process_free tracepoint\n");
		err = -ENOENT;
		goto fail;
	}
	err = tracepoint_probe_register(ap_tp_free, ap_on_free, NULL);
	if (err)
		goto fail;
	err = tracepoint_probe_register(ap_tp_switch, ap_on_switch, NULL);
	if (err) {
		tracepoint_probe_unregister(ap_tp_free, ap_on_free, NULL);
		goto fail;
	}
	return 0;
fail:
	vfree(ap_mem);
	vfree(ap_ctx_hash);
	vfree(ap_threads);
	return err;
}

void ap_measure_exit(void)
{
	tracepoint_probe_unregister(ap_tp_switch, ap_on_switch, NULL);
	tracepoint_probe_unregister(ap_tp_free, ap_on_free, NULL);
	tracepoint_synchronize_unregister();
	vfree(ap_mem);
	vfree(ap_ctx_hash);
	vfree(ap_threads);
}
