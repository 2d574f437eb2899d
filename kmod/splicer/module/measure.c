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
 * Exits are seen by hijacking the return address, as kretprobes do: a
 * timer's entry handler saves the caller's return address in the frame and
 * replaces it with ap_exit_tramp; the exit handler pops the frame and
 * returns the saved address.
 * When a session ends with frames outstanding (a task asleep inside a timed
 * function), ap_unhook_frames puts the saved addresses back on the stacks,
 * so that no return comes through the module any more and nothing pins it.
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
#include <linux/workqueue.h>
#include <linux/sched/clock.h>
#include <linux/rcupdate.h>
#include <linux/preempt.h>
#include <linux/math64.h>
#include <linux/stop_machine.h>
#include <linux/uaccess.h>
#include <linux/sched/task_stack.h>
#include <asm/tsc.h>
#include <asm/msr.h>

#include "splice.h"

#define AP_TOMB		((struct task_struct *)1UL)
#define AP_PROBES	64

struct ap_frame {
	u64 start;		/* ap_now() at entry */
	u64 child;		/* inclusive time of instrumented children */
	u64 off_incl;		/* off-CPU time in this frame and below */
	u64 off_excl;		/* off-CPU time while this frame was on top */
	unsigned long *slot;	/* where the return address was */
	unsigned long ret;	/* the return address */
	u32 ctx;		/* the context children see */
	u32 inst;
	u32 gen;		/* the session that pushed it */
	u32 unhooked;		/* ap_unhook_frames put ret back at slot */
};

struct ap_thread {
	struct task_struct *task;	/* key: NULL empty, AP_TOMB dead */
	u32 depth;
	u32 pad;
	u64 out_at;			/* switched out at, 0 while running */
	struct ap_frame f[AP_MAX_DEPTH];
};

static struct ap_thread *ap_threads;
static u32 ap_threads_mask;
static u64 *ap_ctx_hash;		/* key << 24 | ctx id */
static u32 ap_ctx_hash_mask;

static void *ap_mem;			/* the area user space maps */
static unsigned long ap_mem_size, ap_ctx_off, ap_cpu_off, ap_stride;
static struct ap_header *ap_hdr;
static struct ap_ctx *ap_ctxtab;

static DEFINE_PER_CPU(int, ap_busy);
DEFINE_PER_CPU(struct task_struct *, ap_root_task);
DEFINE_PER_CPU(u64, ap_misses[AP_M_N]);

static struct tracepoint *ap_tp_switch, *ap_tp_exit;

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

/* ap_intern returns the id of context (parent, inst), 0 when full. */
static notrace u32 ap_intern(u32 parent, u32 inst)
{
	u64 key = (u64)parent << 16 | inst;
	u32 h = hash_64(key, 32), i, id = 0;

	for (i = 0; i < AP_PROBES; i++, h++) {
		u64 *slot = &ap_ctx_hash[h & ap_ctx_hash_mask];
		u64 e = READ_ONCE(*slot);

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
			e = cmpxchg(slot, 0, key << 24 | id);
			if (!e)
				return id;
		}
		if ((e >> 24) == key) {
			if (id)	/* lost a race: the id stays unused */
				WRITE_ONCE(ap_ctxtab[id].inst, 0);
			return e & 0xffffff;
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
	struct ap_inst *in;

	if (id == 0 || id >= ap_max_insts)
		return NULL;
	in = &ap_insts[id];
	if (READ_ONCE(in->state) != AP_LIVE || !ap_wanted(in))
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

/*
 * ap_enter is the entry handler of timers and exit counters, called by
 * ap_stub_enter with the instrument id and the address of the return
 * address of the instrumented function.
 */
__visible notrace void ap_enter(u32 id, unsigned long *slot)
{
	struct ap_inst *in;
	struct ap_thread *t;
	struct ap_frame *f;
	u32 ctx;

	if (in_nmi()) {
		ap_miss(AP_M_RECURSION);
		return;
	}
	preempt_disable_notrace();
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
	if (t->depth >= AP_MAX_DEPTH) {
		ap_miss(AP_M_DEPTH);
		goto out;
	}
	/*
	 * Entered again without a call (a jump back to the entry): no second
	 * frame. Another instrument of the same site stacks its frame.
	 */
	if (READ_ONCE(*slot) == (unsigned long)ap_exit_tramp && t->depth &&
	    t->f[t->depth - 1].slot == slot && t->f[t->depth - 1].inst == id) {
		ap_miss(AP_M_UNMATCHED);
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
	f->ret = *slot;
	f->unhooked = 0;
	barrier();
	WRITE_ONCE(t->depth, t->depth + 1);
	*slot = (unsigned long)ap_exit_tramp;
	ap_set_root(t);
	f->start = ap_now();
out:
	this_cpu_dec(ap_busy);
	preempt_enable_notrace();
}
NOKPROBE_SYMBOL(ap_enter);

/* ap_charge records the return of frame f, which was at index at. */
static notrace void ap_charge(struct ap_thread *t, struct ap_frame *f, u32 at, u64 now)
{
	struct ap_inst *in = &ap_insts[f->inst];
	struct ap_frame *p = at ? &t->f[at - 1] : NULL;
	struct ap_stats *s;
	u64 incl, excl;
	u32 ctx;

	if (f->gen != ap_gen)
		return;
	if (READ_ONCE(in->state) != AP_LIVE) {
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
	incl = now - f->start;
	excl = incl > f->child ? incl - f->child : 0;
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
 * ap_exit is where hijacked returns land (through ap_exit_tramp): sp is
 * the stack pointer after the return, so the return address was at sp - 1.
 * It pops the frame and returns the address to go back to.
 */
__visible notrace unsigned long ap_exit(unsigned long *sp)
{
	unsigned long *slot = sp - 1, ret;
	struct ap_thread *t;
	struct ap_frame f;
	bool nested;
	u64 now;
	int i;

	preempt_disable_notrace();
	nested = this_cpu_inc_return(ap_busy) != 1;
	now = ap_now();
	t = ap_thread_find(current, false);
	for (i = t ? (int)t->depth - 1 : -1; i >= 0; i--)
		if (t->f[i].slot == slot)
			break;
	/*
	 * Every hijacked return has its frame: frames are removed only here
	 * and when the task dies (it never returns then).
	 */
	BUG_ON(i < 0);
	f = t->f[i];
	ret = f.ret;
	if (i != t->depth - 1) {
		/* Returns above it were lost: keep their frames, they still return. */
		ap_miss(AP_M_UNMATCHED);
		memmove(&t->f[i], &t->f[i + 1], (t->depth - 1 - i) * sizeof(f));
	}
	WRITE_ONCE(t->depth, t->depth - 1);
	if (nested)
		ap_miss(AP_M_RECURSION);
	else
		ap_charge(t, &f, i, now);
	ap_set_root(t);
	this_cpu_dec(ap_busy);
	preempt_enable_notrace();
	return ret;
}
NOKPROBE_SYMBOL(ap_exit);

/* ap_count is the slow path of counters: outside the root context, or filtered. */
__visible notrace void ap_count(u32 id)
{
	struct ap_thread *t;
	u32 ctx;

	if (in_nmi()) {
		ap_miss(AP_M_RECURSION);
		return;
	}
	preempt_disable_notrace();
	if (!ap_guard())
		goto out;
	if (!ap_live_inst(id))
		goto out;
	t = ap_thread_find(current, false);
	ctx = ap_intern(ap_top(t), id);
	if (ctx)
		ap_stats_of(ctx)->calls++;
	ap_set_root(t);
out:
	this_cpu_dec(ap_busy);
	preempt_enable_notrace();
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
	if (!ap_guard())
		goto out;
	now = ap_now();
	t = ap_thread_find(prev, false);
	if (t && t->depth && !preempt && prev_state != TASK_RUNNING)
		t->out_at = now;
	t = ap_thread_find(next, false);
	if (t && t->out_at) {
		if (t->depth) {
			struct ap_frame *f = &t->f[t->depth - 1];

			f->off_incl += now - t->out_at;
			f->off_excl += now - t->out_at;
		}
		t->out_at = 0;
	}
out:
	this_cpu_dec(ap_busy);
}
NOKPROBE_SYMBOL(ap_on_switch);

/* sched_process_exit: the dying task's frames never return. */
static notrace void ap_on_exit(void *data, struct task_struct *p)
{
	struct ap_thread *t;

	this_cpu_inc(ap_busy);
	t = ap_thread_find(p, false);
	if (t) {
		t->depth = 0;
		smp_store_release(&t->task, AP_TOMB);
	}
	this_cpu_dec(ap_busy);
}
NOKPROBE_SYMBOL(ap_on_exit);

static void ap_find_tp(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sched_switch"))
		ap_tp_switch = tp;
	else if (!strcmp(tp->name, "sched_process_exit"))
		ap_tp_exit = tp;
}


/*
 * Putting hijacked returns back. When a session ends (its file is closed,
 * its process killed, or the module removed under it) some tasks may sleep
 * inside timed functions, their return addresses on the stack pointing at
 * ap_exit_tramp. Rather than keep the module until they wake (which may be
 * never), the saved return addresses are written back in place:
 *
 * 1. Under stop_machine no task runs, and none is inside a handler (they run
 *    preempt-off). For every frame whose slot, in its task's stack above
 *    the task's saved stack pointer, still holds ap_exit_tramp, the slot
 *    gets the saved address back and the frame is marked. A task that has
 *    already returned into ap_exit_tramp and was preempted before its first
 *    instruction may still find ap_exit_tramp in its (now dead) slot (where
 *    the interrupt frame did not land on it): the slot gets the saved
 *    address too, which ap_exit_tramp's first push overwrites, and the task
 *    pops its frame, still there, as usual. Once ap_exit_tramp has started,
 *    the slot holds 0, then the saved address: never ap_exit_tramp. This
 *    pass is also the barrier after the withdrawal: a task that hijacked a
 *    return just before the instruments were withdrawn has its frame by
 *    now, and one that had not yet sees them withdrawn.
 * 2. RCU-tasks (and _rude, for the idle tasks) waits until every task that
 *    was preempted inside the module's text has left it: only those still
 *    needed a frame.
 * 3. Under stop_machine again every shadow stack is emptied. No return can
 *    land in ap_exit_tramp any more: the instruments were withdrawn first,
 *    and only a live instrument's entry hijacks a return.
 */
struct ap_unhook {
	u32 restored;	/* slots given their return address back */
	u32 frames;	/* frames on the shadow stacks */
};

static int ap_unhook_fn(void *data)
{
	struct ap_unhook *u = data;
	unsigned long lo, hi;
	u32 i, d;

	for (i = 0; i <= ap_threads_mask; i++) {
		struct ap_thread *t = &ap_threads[i];
		struct task_struct *k = READ_ONCE(t->task);

		if (!k || k == AP_TOMB)
			continue;
		/* A task on a CPU (a stopper) saved no stack pointer of now. */
		hi = (unsigned long)task_stack_page(k) + THREAD_SIZE;
		lo = READ_ONCE(k->on_cpu) ? hi - THREAD_SIZE : k->thread.sp;
		/* Top down: a slot used again belongs to its newest frame. */
		for (d = t->depth; d-- > 0;) {
			struct ap_frame *f = &t->f[d];
			unsigned long v, a = (unsigned long)f->slot;

			u->frames++;
			/* Not live on its stack (an interrupt's, returned long ago). */
			if (a < lo || a + sizeof(v) > hi)
				continue;
			if (f->unhooked || get_kernel_nofault(v, f->slot) ||
			    v != (unsigned long)ap_exit_tramp)
				continue;
			WRITE_ONCE(*f->slot, f->ret);
			f->unhooked = 1;
			u->restored++;
		}
	}
	return 0;
}

static int ap_purge_fn(void *data)
{
	u32 i;

	for (i = 0; i <= ap_threads_mask; i++) {
		struct ap_thread *t = &ap_threads[i];
		struct task_struct *k = READ_ONCE(t->task);

		if (k && k != AP_TOMB) {
			t->depth = 0;
			t->out_at = 0;
		}
	}
	return 0;
}

/*
 * ap_unhook_frames puts every outstanding hijacked return back (see above).
 * Every instrument must be withdrawn; it sleeps.
 */
void ap_unhook_frames(void)
{
	struct ap_unhook u = {};

	stop_machine(ap_unhook_fn, &u, NULL);
	if (!u.frames)
		return;
	synchronize_rcu_tasks();
	synchronize_rcu_tasks_rude();
	stop_machine(ap_purge_fn, NULL, NULL);
	pr_info("put %u hijacked returns back (%u frames outstanding)\n", u.restored, u.frames);
}

/* ap_measure_reset clears contexts and statistics for a new session. */
void ap_measure_reset(void)
{
	WRITE_ONCE(ap_gen, ap_gen + 1);
	/* No handler still works with the old generation: they run preempt-off. */
	synchronize_rcu();
	memset(ap_ctx_hash, 0, (ap_ctx_hash_mask + 1) * sizeof(u64));
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
	ap_ctx_hash = vzalloc(array_size(nhash, sizeof(u64)));
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
	if (!ap_tp_switch || !ap_tp_exit) {
		pr_err("no sched_switch or sched_process_exit tracepoint\n");
		err = -ENOENT;
		goto fail;
	}
	err = tracepoint_probe_register(ap_tp_exit, ap_on_exit, NULL);
	if (err)
		goto fail;
	err = tracepoint_probe_register(ap_tp_switch, ap_on_switch, NULL);
	if (err) {
		tracepoint_probe_unregister(ap_tp_exit, ap_on_exit, NULL);
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
	tracepoint_probe_unregister(ap_tp_exit, ap_on_exit, NULL);
	tracepoint_synchronize_unregister();
	vfree(ap_mem);
	vfree(ap_ctx_hash);
	vfree(ap_threads);
}
