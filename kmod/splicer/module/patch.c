// SPDX-License-Identifier: GPL-2.0
/*
 * patch.c - splicing jumps in and out of live kernel text.
 *
 * A splice replaces a window of whole instructions (at least 5 bytes) at
 * a site with "jmp trampoline". The trampoline, written by the controller
 * and relocated here, runs the instrument, then the displaced instructions
 * (relocated), then jumps back to the end of the window.
 *
 * In (the order of optprobes, arch/x86/kernel/kprobes/opt.c):
 *  1. write the trampoline into a free slot of the pool (our own module
 *     text, so within +-2 GiB of every kernel site);
 *  2. under text_mutex, compare the window with the bytes the controller
 *     expects, and write int3 at its first byte; sync every CPU. A CPU
 *     that hits the int3 is sent to the trampoline (ap_int3_notify), so
 *     from now on nobody enters bytes 1.. of the window;
 *  3. when the window holds more than one instruction, wait for RCU-tasks
 *     (and RCU-tasks-rude for idle tasks), so that no task preempted or
 *     interrupted inside the window is still there;
 *  4. under text_mutex again, check int3 and the rest of the window are
 *     still as left, write bytes 1..4 of the jump, sync, write byte 0,
 *     sync (the int3 protocol of text_poke_bp);
 *  5. retire the int3 redirect after an RCU grace period.
 *
 * Out is the reverse: int3 over the jump's first byte, sync, the original
 * bytes 1..4, sync, the original byte 0, sync. The trampoline slot is
 * reused only after RCU-tasks (no task preempted in it) and RCU-tasks-rude.
 * A site whose bytes changed underneath is never written again, and its
 * trampoline is never reused.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kdebug.h>
#include <linux/kallsyms.h>
#include <linux/kprobes.h>
#include <linux/notifier.h>
#include <linux/ptrace.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <asm/sync_core.h>
#include <asm/cpufeature.h>

#include "splice.h"

#define AP_INT3 0xcc
#define AP_JMP	0xe9

static struct ap_site ap_sites[AP_POOL_SLOTS];
static unsigned long ap_int3_addr[AP_POOL_SLOTS];	/* redirected sites, by slot */
static atomic_t ap_int3_n;
u64 __percpu *ap_fast;		/* [AP_FAST_SLOTS] */
static u32 ap_fast_owner[AP_FAST_SLOTS];	/* instrument id, 0 when free */
static u64 *ap_retired;		/* fast counts of reclaimed slots, by instrument */

/*
 * Trampoline slots and counter slots withdrawn but maybe still executed:
 * reclaimed after RCU-tasks.
 */
static unsigned long ap_pending[BITS_TO_LONGS(AP_POOL_SLOTS)];
static unsigned long ap_fast_pending[BITS_TO_LONGS(AP_FAST_SLOTS)];
static DEFINE_MUTEX(ap_reclaim_lock);
static void ap_reclaim_fn(struct work_struct *w);
static DECLARE_WORK(ap_reclaim_work, ap_reclaim_fn);

/*
 * ap_pin_broken keeps the module loaded for good: a site that changed
 * underneath may still jump into its trampoline, which lives in our text.
 */
static bool ap_pinned;

static void ap_pin_broken(void)
{
	if (!ap_pinned) {
		__module_get(THIS_MODULE);
		ap_pinned = true;
	}
}

/* ap_broken reports whether a site changed underneath (the module is pinned). */
bool ap_broken(void)
{
	return ap_pinned;
}

/* ap_jump_changed reports whether site s no longer holds our jump. */
static bool ap_jump_changed(const struct ap_site *s)
{
	return memcmp((void *)s->addr, s->jmp, 5);
}

/* ap_mark_broken gives up site s, whose jump is not ours any more. */
static void ap_mark_broken(struct ap_site *s)
{
	u32 j;

	pr_warn("%pS changed underneath, leaving it\n", (void *)s->addr);
	for (j = 0; j < s->ninst; j++)
		WRITE_ONCE(ap_insts[s->ids[j]].state, AP_BROKEN);
	s->live = 0;
	ap_pin_broken();
}

static inline void ap_put32(u8 *p, u32 v)
{
	memcpy(p, &v, sizeof(v));
}

static inline u8 *ap_tramp(u32 slot)
{
	return ap_pool + (unsigned long)slot * AP_SLOT_SIZE;
}

/* ap_int3_notify sends a CPU that hit one of our int3s to the trampoline. */
static notrace int ap_int3_notify(struct notifier_block *nb, unsigned long val, void *data)
{
	struct die_args *args = data;
	unsigned long addr;
	u32 i;

	if (val != DIE_INT3 || user_mode(args->regs) || !atomic_read(&ap_int3_n))
		return NOTIFY_DONE;
	addr = args->regs->ip - 1;
	for (i = 0; i < AP_POOL_SLOTS; i++) {
		if (READ_ONCE(ap_int3_addr[i]) == addr) {
			args->regs->ip = (unsigned long)ap_tramp(i);
			return NOTIFY_STOP;
		}
	}
	return NOTIFY_DONE;
}
NOKPROBE_SYMBOL(ap_int3_notify);

static struct notifier_block ap_int3_nb = {
	.notifier_call = ap_int3_notify,
	.priority = 0x7fff0000,
};

static void ap_do_sync_core(void *info)
{
	sync_core();
}

/* ap_sync makes every CPU see the text as it is now (text_poke_sync). */
static void ap_sync(void)
{
	on_each_cpu(ap_do_sync_core, NULL, 1);
}

static void ap_poke(unsigned long addr, const void *bytes, size_t len)
{
	ap_k.text_poke((void *)addr, bytes, len);
}

/*
 * ap_check_site checks a site against what the kernel itself says: the
 * function kallsyms names at addr must be the one claimed, the window must
 * lie inside it, in core kernel text, and the function must have no
 * exception-table entry (fixup code may jump into it).
 */
static int ap_check_site(struct ap_splice *sp)
{
	char buf[KSYM_SYMBOL_LEN];
	unsigned long off, size, a;
	char *plus, *slash;

	if (sp->addr < ap_k.stext || sp->addr + sp->len > ap_k.etext)
		return -EPERM;
	sprint_symbol(buf, sp->addr);
	plus = strrchr(buf, '+');
	slash = strrchr(buf, '/');
	if (!plus || !slash || slash < plus || strchr(slash, ' '))
		return -EPERM;	/* no symbol, or a module's ("... [mod]") */
	*plus = 0;
	*slash = 0;
	if (kstrtoul(plus + 1, 16, &off) || kstrtoul(slash + 1, 16, &size))
		return -EPERM;
	sp->name[AP_NAME_LEN - 1] = 0;
	if (strcmp(buf, sp->name)) {
		strscpy(sp->found, buf, AP_NAME_LEN);
		return -ENOENT;
	}
	if (sp->addr - off != sp->func || off + sp->len > size)
		return -ERANGE;
	for (a = sp->func; a < sp->func + size; a++)
		if (ap_k.search_extable(a))
			return -EPERM;
	return 0;
}

/* ap_site_at returns the slot of the busy site at addr, or -1. */
static int ap_site_at(unsigned long addr)
{
	u32 i;

	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (ap_sites[i].busy && ap_sites[i].addr == addr)
			return i;
	return -1;
}

/* ap_overlaps reports whether [addr, addr+len) meets a busy site other than skip. */
static bool ap_overlaps(unsigned long addr, u32 len, int skip)
{
	u32 i;

	for (i = 0; i < AP_POOL_SLOTS; i++) {
		struct ap_site *s = &ap_sites[i];

		if ((int)i != skip && s->busy && addr < s->addr + s->len && s->addr < addr + len)
			return true;
	}
	return false;
}

static int ap_alloc_slot(void)
{
	u32 i;

	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (!ap_sites[i].busy && !test_bit(i, ap_pending))
			return i;
	return -ENOSPC;
}

static int ap_alloc_fast(u32 id)
{
	u32 i;

	for (i = 0; i < AP_FAST_SLOTS; i++) {
		if (!ap_fast_owner[i] && !test_bit(i, ap_fast_pending)) {
			ap_fast_owner[i] = id;
			return i;
		}
	}
	return -ENOSPC;
}

/* ap_relocate applies the relocations of sp to out, for slot. */
static int ap_relocate(struct ap_splice *sp, u8 *out, u32 slot)
{
	unsigned long tramp = (unsigned long)ap_tramp(slot);
	u32 i;

	memset(out, AP_INT3, AP_SLOT_SIZE);
	memcpy(out, sp->blob, sp->blob_len);
	for (i = 0; i < sp->nrelocs; i++) {
		struct ap_reloc *r = &sp->relocs[i];
		struct ap_inst *in;
		s64 d;
		u64 v;

		switch (r->kind) {
		case AP_R_PC32:
			if (r->off + 4 > r->end || r->end > sp->blob_len)
				return -EINVAL;
			d = (s64)(r->target - (tramp + r->end));
			if (d != (s32)d)
				return -ERANGE;
			ap_put32(out + r->off, (u32)(s32)d);
			break;
		case AP_R_ID32:
			if (r->off + 4 > sp->blob_len || r->end >= sp->ninst)
				return -EINVAL;
			ap_put32(out + r->off, sp->insts[r->end].id);
			break;
		case AP_R_SLOT64:
			if (r->off + 8 > sp->blob_len || r->end >= sp->ninst)
				return -EINVAL;
			in = &ap_insts[sp->insts[r->end].id];
			if (in->fast == AP_NONE)
				return -EINVAL;
			/* A __percpu address is the %gs offset of its copy. */
			v = (u64)(unsigned long)(ap_fast + in->fast);
			memcpy(out + r->off, &v, sizeof(v));
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * ap_claim_insts checks the instruments of sp and gives the new ones ids
 * (and counters their fast slots). A replacing splice may list again only
 * instruments of the site it replaces (old).
 */
static int ap_claim_insts(struct ap_splice *sp, struct ap_site *old)
{
	struct ap_session *ss = ap_cur;
	u32 i, j, fresh = 0;

	if (!sp->ninst || sp->ninst > AP_SITE_INSTS)
		return -EINVAL;
	for (i = 0; i < sp->ninst; i++) {
		struct ap_inst_req *r = &sp->insts[i];

		if (r->kind < AP_COUNT || r->kind > AP_TIMER || r->npids > AP_MAX_PIDS)
			return -EINVAL;
		if (!r->id) {
			fresh++;
			continue;
		}
		if (!old)
			return -EINVAL;
		for (j = 0; j < old->ninst && old->ids[j] != r->id; j++)
			;
		if (j == old->ninst || ap_insts[r->id].kind != r->kind)
			return -EINVAL;
	}
	if (ss->next_id + fresh > ap_max_insts)
		return -ENOSPC;
	for (i = 0; i < sp->ninst; i++) {
		struct ap_inst_req *r = &sp->insts[i];
		struct ap_inst *in;
		int fast = AP_NONE;

		if (r->id)
			continue;
		if (r->kind == AP_COUNT) {
			fast = ap_alloc_fast(ss->next_id);
			if (fast < 0)
				return fast;	/* the ids claimed so far stay unused */
		}
		r->id = ss->next_id++;
		in = &ap_insts[r->id];
		in->kind = r->kind;
		in->state = AP_FREE;
		in->fast = fast;
		in->npids = r->npids;
		memcpy(in->pids, r->pids, sizeof(in->pids));
	}
	return 0;
}

static void ap_retire_inst(u32 id, u32 state);

/* ap_unclaim withdraws the instruments ap_claim_insts gave ids to. */
static void ap_unclaim(struct ap_splice *sp)
{
	u32 i;

	for (i = 0; i < sp->ninst && i < AP_SITE_INSTS; i++) {
		struct ap_inst_req *r = &sp->insts[i];

		if (r->id && ap_insts[r->id].state == AP_FREE)
			ap_retire_inst(r->id, AP_WITHDRAWN);
	}
}

/* ap_prepare validates one splice and readies its slot and trampoline. */
static int ap_prepare(struct ap_splice *sp, u8 *tramp, int *oldslot)
{
	struct ap_site *site, *old = NULL;
	int slot, err;
	long d;
	u32 i;

	*oldslot = -1;
	if (sp->len < 5 || sp->len > AP_MAX_WINDOW || !sp->ninsns || sp->ninsns > sp->len ||
	    sp->blob_len == 0 || sp->blob_len > AP_MAX_BLOB || sp->nrelocs > AP_MAX_RELOCS ||
	    sp->flags & ~AP_F_REPLACE)
		return -EINVAL;
	err = ap_check_site(sp);
	if (err)
		return err;
	if (sp->flags & AP_F_REPLACE) {
		*oldslot = ap_site_at(sp->addr);
		if (*oldslot < 0 || !ap_sites[*oldslot].live)
			return -ENOENT;
		old = &ap_sites[*oldslot];
		if (old->len != sp->len || memcmp(old->orig, sp->orig, sp->len))
			return -EBUSY;
	} else if (ap_overlaps(sp->addr, sp->len, -1) ||
		   memcmp((void *)sp->addr, sp->orig, sp->len)) {
		return -EBUSY;
	}
	slot = ap_alloc_slot();
	if (slot < 0)
		return slot;
	d = (long)ap_tramp(slot) - (long)(sp->addr + 5);
	if (d != (s32)d)
		return -ERANGE;
	err = ap_claim_insts(sp, old);
	if (!err)
		err = ap_relocate(sp, tramp, slot);
	if (err) {
		ap_unclaim(sp);
		return err;
	}
	site = &ap_sites[slot];
	memset(site, 0, sizeof(*site));
	site->addr = sp->addr;
	site->len = sp->len;
	site->ninsns = sp->ninsns;
	memcpy(site->orig, sp->orig, sp->len);
	site->jmp[0] = AP_JMP;
	ap_put32(&site->jmp[1], (u32)(s32)d);
	site->ninst = sp->ninst;
	for (i = 0; i < sp->ninst; i++)
		site->ids[i] = sp->insts[i].id;
	site->busy = 1;
	sp->tramp = (unsigned long)ap_tramp(slot);
	return slot;
}

/*
 * ap_retire_inst withdraws an instrument: its counter slot is reclaimed
 * with the trampolines, after RCU-tasks.
 */
static void ap_retire_inst(u32 id, u32 state)
{
	struct ap_inst *in = &ap_insts[id];

	WRITE_ONCE(in->state, state);
	if (in->fast != AP_NONE)
		set_bit(in->fast, ap_fast_pending);
}

/*
 * ap_drop_site gives back a slot whose trampoline may have been entered:
 * it is reused after RCU-tasks. The instruments not in keep are retired.
 */
static void ap_drop_site(u32 slot, const struct ap_site *keep, u32 state)
{
	struct ap_site *s = &ap_sites[slot];
	u32 i, j;

	for (i = 0; i < s->ninst; i++) {
		for (j = 0; keep && j < keep->ninst && keep->ids[j] != s->ids[i]; j++)
			;
		if (!keep || j == keep->ninst)
			ap_retire_inst(s->ids[i], state);
	}
	s->busy = 0;
	s->live = 0;
	set_bit(slot, ap_pending);
}

/*
 * ap_retire removes the int3 redirects of slots. The caller synced every
 * CPU after the last int3 left the text: an int3 handler runs with
 * interrupts off (an NMI's too), so a CPU that took the IPI has finished
 * any it was in, and none can enter another at these sites.
 */
static void ap_retire(const u32 *slots, u32 n)
{
	u32 i;

	for (i = 0; i < n; i++) {
		WRITE_ONCE(ap_int3_addr[slots[i]], 0);
		atomic_dec(&ap_int3_n);
	}
}

/* ap_arm writes int3 over the first byte of site s, redirected to slot. */
static void ap_arm(struct ap_site *s, u32 slot)
{
	const u8 int3 = AP_INT3;

	WRITE_ONCE(ap_int3_addr[slot], s->addr);
	atomic_inc(&ap_int3_n);
	smp_wmb();
	ap_poke(s->addr, &int3, 1);
}

/* Progress of one splice of a batch through ap_insert. */
enum { AP_S_NONE, AP_S_READY, AP_S_ARMED, AP_S_LIVE };

struct ap_op {
	int slot, oldslot;
	u8 st;
};

/*
 * ap_insert splices a batch in. Each splice gets its own err; the return
 * value is how many were made live. Called with ap_lock held.
 */
int ap_insert(struct ap_splice *sp, u32 n)
{
	bool quiesce = false;
	u32 i, narmed = 0;
	struct ap_op *op;
	u32 *armed;
	u8 *tramp;
	int live = 0;

	op = kcalloc(n, sizeof(*op), GFP_KERNEL);
	armed = kcalloc(n, sizeof(*armed), GFP_KERNEL);
	tramp = kmalloc(AP_SLOT_SIZE, GFP_KERNEL);
	if (!op || !armed || !tramp) {
		kfree(op);
		kfree(armed);
		kfree(tramp);
		return -ENOMEM;
	}
	mutex_lock(ap_k.text_mutex);
	/* 1. The trampolines. */
	for (i = 0; i < n; i++) {
		int slot;

		sp[i].tramp = 0;
		slot = ap_prepare(&sp[i], tramp, &op[i].oldslot);
		sp[i].err = slot < 0 ? slot : 0;
		if (slot < 0)
			continue;
		op[i].slot = slot;
		ap_poke(sp[i].tramp, tramp, AP_SLOT_SIZE);
		op[i].st = AP_S_READY;
	}
	/*
	 * 2. Compare, then arm the int3s: a CPU that hits one goes to the new
	 * trampoline, equivalent to the old code or the old trampoline.
	 */
	for (i = 0; i < n; i++) {
		struct ap_site *s = &ap_sites[op[i].slot];
		const u8 *expect = s->orig;
		u32 j;

		if (op[i].st != AP_S_READY)
			continue;
		if (op[i].oldslot >= 0)
			expect = ap_sites[op[i].oldslot].jmp;
		if (memcmp((void *)s->addr, expect, op[i].oldslot >= 0 ? 5 : s->len)) {
			sp[i].err = -EBUSY;
			s->busy = 0;
			for (j = 0; j < s->ninst; j++)
				if (ap_insts[s->ids[j]].state == AP_FREE)
					ap_retire_inst(s->ids[j], AP_WITHDRAWN);
			op[i].st = AP_S_NONE;
			continue;
		}
		for (j = 0; j < s->ninst; j++)
			WRITE_ONCE(ap_insts[s->ids[j]].state, AP_LIVE);
		ap_arm(s, op[i].slot);
		armed[narmed++] = op[i].slot;
		op[i].st = AP_S_ARMED;
		quiesce |= op[i].oldslot < 0 && s->ninsns > 1;
	}
	mutex_unlock(ap_k.text_mutex);
	ap_sync();
	/* 3. Nobody may still be inside a new window of several instructions. */
	if (quiesce) {
		synchronize_rcu_tasks();
		synchronize_rcu_tasks_rude();
	}
	/* 4. The jump: compare again, bytes 1..4, then byte 0. */
	mutex_lock(ap_k.text_mutex);
	for (i = 0; i < n; i++) {
		struct ap_site *s = &ap_sites[op[i].slot];
		const u8 *tail = s->orig;

		if (op[i].st != AP_S_ARMED)
			continue;
		if (op[i].oldslot >= 0)
			tail = ap_sites[op[i].oldslot].jmp;
		if (*(u8 *)s->addr != AP_INT3 || memcmp((void *)s->addr + 1, tail + 1, 4) ||
		    (op[i].oldslot < 0 && memcmp((void *)s->addr + 5, s->orig + 5, s->len - 5))) {
			if (*(u8 *)s->addr == AP_INT3)
				ap_poke(s->addr, tail, 1);
			sp[i].err = -EBUSY;
			continue;
		}
		ap_poke(s->addr + 1, s->jmp + 1, 4);
		op[i].st = AP_S_LIVE;
	}
	ap_sync();
	for (i = 0; i < n; i++) {
		struct ap_site *s = &ap_sites[op[i].slot];

		if (op[i].st != AP_S_LIVE)
			continue;
		ap_poke(s->addr, s->jmp, 1);
		s->live = 1;
		live++;
	}
	ap_sync();
	mutex_unlock(ap_k.text_mutex);
	/* 5. Retire the redirects, and what the batch replaced or failed. */
	ap_retire(armed, narmed);
	for (i = 0; i < n; i++) {
		if (op[i].st == AP_S_LIVE && op[i].oldslot >= 0)
			ap_drop_site(op[i].oldslot, &ap_sites[op[i].slot], AP_WITHDRAWN);
		else if (op[i].st == AP_S_ARMED && op[i].oldslot >= 0)
			ap_drop_site(op[i].slot, &ap_sites[op[i].oldslot], AP_WITHDRAWN);
		else if (op[i].st == AP_S_ARMED)
			ap_drop_site(op[i].slot, NULL, AP_WITHDRAWN);
	}
	kfree(op);
	kfree(armed);
	kfree(tramp);
	if (!bitmap_empty(ap_pending, AP_POOL_SLOTS))
		schedule_work(&ap_reclaim_work);
	return live;
}

/*
 * ap_withdraw splices the sites at addrs out, leaving their instruments
 * in state; the return value is how many sites were withdrawn. Called with
 * ap_lock held.
 */
u32 ap_withdraw(const u64 *addrs, u32 n, u32 state)
{
	/* Static, under ap_lock: withdrawing must not fail for want of memory. */
	static u32 slots[AP_POOL_SLOTS];
	u32 i, nslots = 0, done = 0;

	mutex_lock(ap_k.text_mutex);
	for (i = 0; i < n; i++) {
		int slot = ap_site_at(addrs[i]);
		struct ap_site *s;

		if (slot < 0 || !ap_sites[slot].live)
			continue;
		s = &ap_sites[slot];
		if (ap_jump_changed(s)) {
			/* Not our jump any more: never touch it again. */
			ap_mark_broken(s);
			continue;
		}
		ap_arm(s, slot);
		slots[nslots++] = slot;
	}
	ap_sync();
	for (i = 0; i < nslots; i++) {
		struct ap_site *s = &ap_sites[slots[i]];

		ap_poke(s->addr + 1, s->orig + 1, 4);
	}
	ap_sync();
	for (i = 0; i < nslots; i++) {
		struct ap_site *s = &ap_sites[slots[i]];

		ap_poke(s->addr, s->orig, 1);
		s->live = 0;
		done++;
	}
	ap_sync();
	mutex_unlock(ap_k.text_mutex);
	ap_retire(slots, nslots);
	for (i = 0; i < nslots; i++)
		ap_drop_site(slots[i], NULL, state);
	if (nslots)
		schedule_work(&ap_reclaim_work);
	return done;
}

/* ap_withdraw_all withdraws every live site. Called with ap_lock held. */
void ap_withdraw_all(u32 state)
{
	static u64 addrs[AP_POOL_SLOTS];	/* under ap_lock, as in ap_withdraw */
	u32 i, n = 0;

	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (ap_sites[i].live)
			addrs[n++] = ap_sites[i].addr;
	ap_withdraw(addrs, n, state);
}

/*
 * ap_check_sites gives up every live site whose jump was changed
 * underneath (by another patcher), pinning the module at once: the dead-man
 * work calls it on every tick, so that rmmod is refused rather than noticing
 * the change only while the module goes, too late to stay. Called with
 * ap_lock held.
 */
void ap_check_sites(void)
{
	u32 i;

	for (i = 0; i < AP_POOL_SLOTS; i++) {
		struct ap_site *s = &ap_sites[i];

		if (s->live && ap_jump_changed(s))
			ap_mark_broken(s);
	}
}

/* ap_fast_sum returns the fast-path counts of instrument id. */
u64 ap_fast_sum(u32 id)
{
	struct ap_inst *in = &ap_insts[id];
	u64 sum = ap_retired[id];
	int cpu;

	if (in->kind == AP_COUNT && in->fast < AP_FAST_SLOTS && ap_fast_owner[in->fast] == id)
		for_each_possible_cpu(cpu)
			sum += *per_cpu_ptr(ap_fast + in->fast, cpu);
	return sum;
}

/*
 * ap_reclaim_fn frees the slots whose trampolines may still be executed,
 * and the counter slots of withdrawn counters: after RCU-tasks no task is
 * preempted inside a trampoline, after RCU-tasks-rude no idle task is
 * interrupted inside one. A counter's fast counts are folded into its
 * retired count.
 */
static void ap_reclaim_fn(struct work_struct *w)
{
	DECLARE_BITMAP(slots, AP_POOL_SLOTS);
	DECLARE_BITMAP(fast, AP_FAST_SLOTS);
	u32 i;

	mutex_lock(&ap_reclaim_lock);
	mutex_lock(&ap_lock);
	bitmap_copy(slots, ap_pending, AP_POOL_SLOTS);
	bitmap_copy(fast, ap_fast_pending, AP_FAST_SLOTS);
	mutex_unlock(&ap_lock);
	if (bitmap_empty(slots, AP_POOL_SLOTS) && bitmap_empty(fast, AP_FAST_SLOTS))
		goto out;
	synchronize_rcu_tasks();
	synchronize_rcu_tasks_rude();
	mutex_lock(&ap_lock);
	for_each_set_bit(i, slots, AP_POOL_SLOTS)
		clear_bit(i, ap_pending);
	for_each_set_bit(i, fast, AP_FAST_SLOTS) {
		u32 owner = ap_fast_owner[i];
		int cpu;

		for_each_possible_cpu(cpu) {
			u64 *c = per_cpu_ptr(ap_fast + i, cpu);

			ap_retired[owner] += *c;
			*c = 0;
		}
		if (ap_insts[owner].fast == i)
			ap_insts[owner].fast = AP_NONE;
		ap_fast_owner[i] = 0;
		clear_bit(i, ap_fast_pending);
	}
	mutex_unlock(&ap_lock);
out:
	mutex_unlock(&ap_reclaim_lock);
}

/* ap_short reports whether fewer than n slots are free of each kind. */
bool ap_short(u32 n)
{
	u32 i, slots = 0, fast = 0;

	for (i = 0; i < AP_POOL_SLOTS; i++)
		slots += !ap_sites[i].busy && !test_bit(i, ap_pending);
	for (i = 0; i < AP_FAST_SLOTS; i++)
		fast += !ap_fast_owner[i] && !test_bit(i, ap_fast_pending);
	return slots < n || fast < n;
}

/* ap_reclaim_flush waits until every withdrawn slot is free again. */
void ap_reclaim_flush(void)
{
	flush_work(&ap_reclaim_work);
	ap_reclaim_fn(NULL);
}

/* ap_reset_retired forgets the fast counts of a finished session. */
void ap_reset_retired(void)
{
	memset(ap_retired, 0, ap_max_insts * sizeof(u64));
}

/* ap_synthesize_clac turns the stubs' nops into CLAC under SMAP. */
static void ap_synthesize_clac(void)
{
	static const u8 clac[3] = { 0x0f, 0x01, 0xca };

	if (!boot_cpu_has(X86_FEATURE_SMAP))
		return;
	mutex_lock(ap_k.text_mutex);
	ap_poke((unsigned long)ap_clac_enter, clac, sizeof(clac));
	ap_poke((unsigned long)ap_clac_count, clac, sizeof(clac));
	ap_poke((unsigned long)ap_clac_exit, clac, sizeof(clac));
	mutex_unlock(ap_k.text_mutex);
	ap_sync();
}

int ap_patch_init(void)
{
	int err;

	ap_fast = __alloc_percpu(AP_FAST_SLOTS * sizeof(u64), PAGE_SIZE);
	ap_retired = vzalloc(array_size(ap_max_insts, sizeof(u64)));
	if (!ap_fast || !ap_retired) {
		free_percpu(ap_fast);
		vfree(ap_retired);
		return -ENOMEM;
	}
	ap_synthesize_clac();
	err = register_die_notifier(&ap_int3_nb);
	if (err) {
		free_percpu(ap_fast);
		vfree(ap_retired);
	}
	return err;
}

void ap_patch_exit(void)
{
	u32 i;

	ap_reclaim_flush();
	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (ap_sites[i].busy)
			pr_err("%pS still spliced at unload\n", (void *)ap_sites[i].addr);
	unregister_die_notifier(&ap_int3_nb);
	free_percpu(ap_fast);
	vfree(ap_retired);
}
