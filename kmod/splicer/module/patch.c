// SPDX-License-Identifier: GPL-2.0
/*
 * patch.c - trampoline slots, and splicing jumps in and out of live
 * kernel text (instrument ids are inst.c's), in the phases of optprobes
 * (arch/x86/kernel/kprobes/opt.c: prepare, optimize, unoptimize).
 *
 * In (ap_insert):
 *  1. prepare (ap_lock, text_mutex): validate the request before touching
 *     anything, check the site (site.c), claim the instruments' ids, build
 *     the trampoline (tramp.c) into a free slot of the pool (our own module
 *     text, so within +-2 GiB of every kernel site);
 *  2. arm: compare the window with the bytes the request expects, write
 *     int3 at its first byte, sync every CPU. A CPU that hits the int3 is
 *     sent to the trampoline (ap_int3_notify), so from now on nobody enters
 *     bytes 1.. of the window;
 *  3. quiesce, with no lock held and killable: when a window holds more
 *     than one instruction, wait for RCU-tasks and RCU-tasks-rude, so that
 *     no task preempted or interrupted inside it is still there. The
 *     dead-man and overhead switches, release() and rmmod may withdraw
 *     everything meanwhile, armed windows included;
 *  4. commit (ap_lock, text_mutex): check the int3 and the rest of the
 *     window are still as left, write bytes 1..4 of the jump, sync, byte 0,
 *     sync (the int3 protocol of text_poke_bp); then nops over the rest of
 *     the window, sync, so that a decoder walking the function (kprobes'
 *     can_probe(), ours) stays in step after the jump;
 *  5. retire the int3 redirects.
 *
 * Out (ap_withdraw): the whole window must still hold the jump and the
 * nops; int3 over the first byte, sync, the original bytes 1..len-1, sync,
 * byte 0, sync. A trampoline slot and an instrument id are reused only
 * after RCU-tasks (no task preempted in a trampoline) and RCU-tasks-rude.
 * A site whose bytes changed underneath is never written again, and its
 * trampoline and ids are never reused.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kdebug.h>
#include <linux/kprobes.h>
#include <linux/notifier.h>
#include <linux/ptrace.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <asm/nops.h>
#include <asm/sync_core.h>
#include <asm/text-patching.h>

#include "splice.h"

static struct ap_site ap_sites[AP_POOL_SLOTS];
static unsigned long ap_int3_addr[AP_POOL_SLOTS];	/* redirected sites, by slot */
static atomic_t ap_int3_n;

/*
 * Trampoline slots withdrawn but maybe still used by a task preempted in a
 * trampoline: reclaimed after RCU-tasks (instrument slots likewise, inst.c).
 */
static unsigned long ap_pending[BITS_TO_LONGS(AP_POOL_SLOTS)];
static DEFINE_MUTEX(ap_reclaim_lock);
static void ap_reclaim_fn(struct work_struct *w);
static DECLARE_WORK(ap_reclaim_work, ap_reclaim_fn);
static struct workqueue_struct *ap_wq;

/*
 * ap_pinned keeps the module loaded for good: a site that changed
 * underneath may still jump into its trampoline, which lives in our text.
 */
static bool ap_pinned;

bool ap_broken(void)
{
	return ap_pinned;
}

struct ap_site *ap_site_of_slot(u32 slot)
{
	return &ap_sites[slot];
}

static inline u8 *ap_tramp(u32 slot)
{
	return ap_pool + (unsigned long)slot * AP_SLOT_SIZE;
}

static int ap_slot_of(const struct ap_site *s)
{
	return s - ap_sites;
}

/* ap_site_of returns the site (not free) at addr, or NULL. */
struct ap_site *ap_site_of(unsigned long addr)
{
	u32 i;

	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (ap_sites[i].state != AP_S_FREE && ap_sites[i].addr == addr)
			return &ap_sites[i];
	return NULL;
}

/* ap_overlaps reports whether [addr, addr+len) meets a site that is not free. */
static bool ap_overlaps(unsigned long addr, u32 len)
{
	u32 i;

	for (i = 0; i < AP_POOL_SLOTS; i++) {
		struct ap_site *s = &ap_sites[i];

		if (s->state != AP_S_FREE && addr < s->addr + s->len && s->addr < addr + len)
			return true;
	}
	return false;
}

/* ap_int3_notify sends a CPU that hit one of our int3s to the trampoline. */
static notrace int ap_int3_notify(struct notifier_block *nb, unsigned long val, void *data)
{
	struct die_args *args = data;
	unsigned long addr;
	u32 i;

	if (val != DIE_INT3 || user_mode(args->regs) || !atomic_read(&ap_int3_n))
		return NOTIFY_DONE;
	addr = args->regs->ip - INT3_INSN_SIZE;
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
	ap_text_poke((void *)addr, bytes, len);
}

/* ap_mark_broken gives up site s, whose bytes are not ours any more. */
static void ap_mark_broken(struct ap_site *s)
{
	u32 j;

	pr_warn("%pS changed underneath, leaving it\n", (void *)s->addr);
	for (j = 0; j < s->ninst; j++) {
		struct ap_inst *in = ap_inst_of(s->ids[j]);

		if (in)
			WRITE_ONCE(in->state, AP_BROKEN);
	}
	s->state = AP_S_BROKEN;
	if (!ap_pinned) {
		__module_get(THIS_MODULE);
		ap_pinned = true;
	}
}

/* ap_changed reports whether a live site no longer holds all of its jump and nops. */
static bool ap_changed(const struct ap_site *s)
{
	return memcmp((void *)s->addr, s->live, s->len);
}

/* ap_validate refuses a malformed request before anything is looked up. */
static int ap_validate(const struct ap_splice *sp)
{
	if (sp->len < JMP32_INSN_SIZE || sp->len > AP_MAX_WINDOW || sp->flags & ~AP_F_REPLACE ||
	    sp->role < AP_BLOCK || sp->role > AP_RETURN || sp->ninst > AP_SITE_INSTS ||
	    (!sp->ninst) != (sp->role == AP_RETURN))
		return -EINVAL;
	return 0;
}

/* Trampoline slots. */

static int ap_alloc_slot(void)
{
	u32 i;

	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (ap_sites[i].state == AP_S_FREE && !test_bit(i, ap_pending))
			return i;
	return -ENOSPC;
}

/* ap_fill_nops writes n bytes of the kernel's nops. */
static void ap_fill_nops(u8 *p, unsigned int n)
{
	static const u8 nops[ASM_NOP_MAX][ASM_NOP_MAX] = {
		{ BYTES_NOP1 }, { BYTES_NOP2 }, { BYTES_NOP3 }, { BYTES_NOP4 },
		{ BYTES_NOP5 }, { BYTES_NOP6 }, { BYTES_NOP7 }, { BYTES_NOP8 },
	};

	while (n) {
		unsigned int k = min_t(unsigned int, n, ASM_NOP_MAX);

		memcpy(p, nops[k - 1], k);
		p += k;
		n -= k;
	}
}

/*
 * ap_drop_site gives back a slot whose trampoline may have been entered:
 * it is reused after RCU-tasks. Its instruments not in keep are retired.
 */
static void ap_drop_site(struct ap_site *s, const struct ap_site *keep, u32 state)
{
	u32 i, j;

	for (i = 0; i < s->ninst; i++) {
		for (j = 0; keep && j < keep->ninst && keep->ids[j] != s->ids[i]; j++)
			;
		if (!keep || j == keep->ninst)
			ap_retire_inst(s->ids[i], state);
	}
	s->state = AP_S_FREE;
	set_bit(ap_slot_of(s), ap_pending);
}

/* ap_unprepare gives back a slot whose trampoline was never reachable. */
static void ap_unprepare(struct ap_site *s, struct ap_splice *sp, u32 fresh)
{
	ap_unclaim(sp, fresh);
	s->state = AP_S_FREE;
}

/*
 * ap_prepare validates one splice, checks its site, claims its ids and
 * writes its trampoline into a free slot (phase 1).
 */
static int ap_prepare(struct ap_splice *sp, u8 *buf, u32 *fresh)
{
	const struct ap_inst *insts[AP_SITE_INSTS];
	struct ap_site *s, *old = NULL;
	struct ap_window w;
	int slot, len, err;
	long d;
	u32 i;
	u8 out;

	err = ap_validate(sp);
	if (err)
		return err;
	if (sp->flags & AP_F_REPLACE) {
		old = ap_site_of(sp->addr);
		if (!old || old->state != AP_S_LIVE || old->covered) {
			strscpy(sp->found, "no live site to replace", AP_NAME_LEN);
			return -ENOENT;
		}
		if (old->len != sp->len || old->role != sp->role || memcmp(old->orig, sp->orig, sp->len))
			return -EBUSY;
	} else if (ap_overlaps(sp->addr, sp->len)) {
		strscpy(sp->found, "overlaps another site", AP_NAME_LEN);
		return -EBUSY;
	}
	err = ap_check_site(sp, &w);
	if (err)
		return err;
	slot = ap_alloc_slot();
	if (slot < 0)
		return slot;
	d = (long)ap_tramp(slot) - (long)(sp->addr + JMP32_INSN_SIZE);
	if (d != (s32)d)
		return -ERANGE;
	err = ap_claim_insts(sp, old, fresh);
	if (err)
		return err;
	for (i = 0; i < sp->ninst; i++)
		insts[i] = ap_inst_of(sp->insts[i].id);
	len = ap_build(buf, (unsigned long)ap_tramp(slot), sp, &w, insts, &out);
	if (len < 0) {
		ap_unclaim(sp, *fresh);
		return len;
	}
	s = &ap_sites[slot];
	memset(s, 0, sizeof(*s));
	s->addr = sp->addr;
	s->len = sp->len;
	s->role = sp->role;
	s->out = out;
	s->replaces = old ? ap_slot_of(old) : -1;
	s->ninst = sp->ninst;
	for (i = 0; i < sp->ninst; i++)
		s->ids[i] = sp->insts[i].id;
	memcpy(s->orig, sp->orig, sp->len);
	s->live[0] = JMP32_INSN_OPCODE;
	memcpy(&s->live[1], &(s32){ d }, DISP32_SIZE);
	if (old)
		memcpy(s->live + JMP32_INSN_SIZE, old->live + JMP32_INSN_SIZE, sp->len - JMP32_INSN_SIZE);
	else
		ap_fill_nops(s->live + JMP32_INSN_SIZE, sp->len - JMP32_INSN_SIZE);
	s->state = AP_S_READY;
	ap_poke((unsigned long)ap_tramp(slot), buf, AP_SLOT_SIZE);
	sp->tramp = (unsigned long)ap_tramp(slot);
	sp->tramp_len = len;
	sp->out = out;
	return slot;
}

/* ap_expect returns what a prepared site's window holds before its jump: the original or the old jump. */
static const u8 *ap_expect(const struct ap_site *s)
{
	return s->replaces >= 0 ? ap_sites[s->replaces].live : s->orig;
}

/* ap_arm writes int3 over the first byte of site s, redirected to its trampoline. */
static void ap_arm(struct ap_site *s)
{
	const u8 int3 = INT3_INSN_OPCODE;

	WRITE_ONCE(ap_int3_addr[ap_slot_of(s)], s->addr);
	atomic_inc(&ap_int3_n);
	smp_wmb();
	ap_poke(s->addr, &int3, INT3_INSN_SIZE);
}

/* ap_disarm puts back what an armed site's first byte held. */
static void ap_disarm(struct ap_site *s)
{
	ap_poke(s->addr, ap_expect(s), INT3_INSN_SIZE);
	if (s->replaces >= 0)
		ap_sites[s->replaces].covered = 0;
}

/*
 * ap_retire removes the int3 redirects of slots. The caller synced every
 * CPU after the last int3 left the text: an int3 handler runs with
 * interrupts off (an NMI's too), so a CPU that took the IPI has finished
 * any it was in, and none can enter another at these sites.
 */
static void ap_retire(const int *slots, u32 n)
{
	u32 i;

	for (i = 0; i < n; i++)
		if (slots[i] >= 0 && xchg(&ap_int3_addr[slots[i]], 0))
			atomic_dec(&ap_int3_n);
}

/* ap_several reports whether a window holds more than one instruction a task may stop in. */
static bool ap_several(const struct ap_splice *sp)
{
	struct insn insn;

	if (sp->role == AP_RETURN)
		return false;	/* one instruction, or ret and padding never run */
	return ap_insn_decode(&insn, sp->orig, sp->len) || insn.length < sp->len;
}

/*
 * ap_prepare_arm runs phases 1 and 2 for one splice; slot gets its slot,
 * -1 when refused. It reports whether the window needs quiescence.
 */
static bool ap_prepare_arm(struct ap_splice *sp, u8 *buf, int *slot)
{
	struct ap_site *s;
	u32 fresh = 0, i;

	sp->tramp = 0;
	sp->tramp_len = 0;
	sp->out = 0;
	memset(sp->found, 0, sizeof(sp->found));
	*slot = ap_prepare(sp, buf, &fresh);
	sp->err = *slot < 0 ? *slot : 0;
	if (*slot < 0)
		return false;
	s = &ap_sites[*slot];
	if (memcmp((void *)s->addr, ap_expect(s), s->len)) {
		sp->err = -EBUSY;
		strscpy(sp->found, "the window does not hold the bytes expected", AP_NAME_LEN);
		ap_unprepare(s, sp, fresh);
		*slot = -1;
		return false;
	}
	for (i = 0; i < s->ninst; i++)
		WRITE_ONCE(ap_inst_of(s->ids[i])->state, AP_LIVE);
	ap_arm(s);
	s->state = AP_S_ARMED;
	if (s->replaces >= 0)
		ap_sites[s->replaces].covered = 1;	/* its jump's first byte is our int3 now */
	return s->replaces < 0 && ap_several(sp);
}

/*
 * ap_quiesce waits until no task can be inside a window armed before:
 * RCU-tasks (every task has since switched voluntarily or run in user
 * space) and RCU-tasks-rude (idle tasks, CPUs where RCU is not watching).
 * The wait runs in a worker so that a fatal signal ends it here (-EINTR):
 * kill -9 of the controller releases its session at once.
 */
struct ap_gp {
	struct work_struct work;
	struct completion done;
	refcount_t ref;
};

static void ap_gp_put(struct ap_gp *gp)
{
	if (refcount_dec_and_test(&gp->ref))
		kfree(gp);
}

static void ap_gp_fn(struct work_struct *work)
{
	struct ap_gp *gp = container_of(work, struct ap_gp, work);

	synchronize_rcu_tasks();
	synchronize_rcu_tasks_rude();
	complete(&gp->done);
	ap_gp_put(gp);
}

static int ap_quiesce(void)
{
	struct ap_gp *gp = kmalloc(sizeof(*gp), GFP_KERNEL);
	int err;

	if (!gp) {
		synchronize_rcu_tasks();
		synchronize_rcu_tasks_rude();
		return 0;
	}
	INIT_WORK(&gp->work, ap_gp_fn);
	init_completion(&gp->done);
	refcount_set(&gp->ref, 2);
	queue_work(ap_wq, &gp->work);
	err = wait_for_completion_killable(&gp->done);
	ap_gp_put(gp);
	return err ? -EINTR : 0;
}

/*
 * ap_commit writes the jumps of the armed sites among slots (phase 4),
 * and gives back the ones whose bytes changed meanwhile. It returns how
 * many went live.
 */
static int ap_commit(struct ap_splice *sp, int *slots, u32 n)
{
	u32 i;
	int live = 0;

	for (i = 0; i < n; i++) {
		struct ap_site *s;

		if (slots[i] < 0)
			continue;
		s = &ap_sites[slots[i]];
		if (s->state != AP_S_ARMED) {
			sp[i].err = -ECANCELED;	/* withdrawn meanwhile */
			continue;
		}
		if (*(u8 *)s->addr != INT3_INSN_OPCODE ||
		    memcmp((void *)s->addr + 1, ap_expect(s) + 1, s->len - 1)) {
			if (*(u8 *)s->addr == INT3_INSN_OPCODE)
				ap_disarm(s);
			sp[i].err = -EBUSY;
			ap_drop_site(s, s->replaces >= 0 ? &ap_sites[s->replaces] : NULL, AP_WITHDRAWN);
			continue;
		}
		ap_poke(s->addr + 1, s->live + 1, DISP32_SIZE);
		s->state = AP_S_LIVE;
	}
	ap_sync();
	for (i = 0; i < n; i++)
		if (slots[i] >= 0 && ap_sites[slots[i]].state == AP_S_LIVE && !sp[i].err)
			ap_poke(sp[i].addr, ap_sites[slots[i]].live, 1);
	ap_sync();
	for (i = 0; i < n; i++) {
		struct ap_site *s = slots[i] >= 0 ? &ap_sites[slots[i]] : NULL;

		if (!s || s->state != AP_S_LIVE || sp[i].err)
			continue;
		if (s->replaces < 0 && s->len > JMP32_INSN_SIZE)
			ap_poke(s->addr + JMP32_INSN_SIZE, s->live + JMP32_INSN_SIZE,
				s->len - JMP32_INSN_SIZE);
		if (s->replaces >= 0)
			ap_drop_site(&ap_sites[s->replaces], s, AP_WITHDRAWN);
		s->replaces = -1;
		live++;
	}
	ap_sync();
	return live;
}

/*
 * ap_abort disarms the armed sites among slots: the insertion was cut
 * short (a fatal signal, or a switch withdrew everything meanwhile).
 */
static void ap_abort(struct ap_splice *sp, int *slots, u32 n, int err)
{
	u32 i;

	for (i = 0; i < n; i++) {
		struct ap_site *s = slots[i] >= 0 ? &ap_sites[slots[i]] : NULL;

		if (!s)
			continue;
		sp[i].err = err;
		if (s->state != AP_S_ARMED)
			continue;	/* disarmed by ap_withdraw_all */
		ap_disarm(s);
		ap_drop_site(s, s->replaces >= 0 ? &ap_sites[s->replaces] : NULL, AP_WITHDRAWN);
	}
	ap_sync();
}

/*
 * ap_insert splices a batch in for session ss. Each splice gets its own
 * err; the return value is how many were made live. Called with neither
 * ap_lock nor text_mutex held.
 */
int ap_insert(struct ap_session *ss, struct ap_splice *sp, u32 n)
{
	bool quiesce = false;
	int *slots, live = 0, err = 0;
	u8 *buf;
	u32 i;

	slots = kcalloc(n, sizeof(*slots), GFP_KERNEL);
	buf = kmalloc(AP_SLOT_SIZE, GFP_KERNEL);
	if (!slots || !buf) {
		kfree(slots);
		kfree(buf);
		return -ENOMEM;
	}
	mutex_lock(&ap_lock);
	err = ap_ready(ss);
	if (err) {
		mutex_unlock(&ap_lock);
		goto out;
	}
	mutex_lock(ap_k.text_mutex);
	for (i = 0; i < n; i++)
		quiesce |= ap_prepare_arm(&sp[i], buf, &slots[i]);
	ap_sync();
	mutex_unlock(ap_k.text_mutex);
	mutex_unlock(&ap_lock);

	if (quiesce)
		err = ap_quiesce();

	mutex_lock(&ap_lock);
	mutex_lock(ap_k.text_mutex);
	if (err || ss->dead)
		ap_abort(sp, slots, n, err ?: -ECANCELED);
	else
		live = ap_commit(sp, slots, n);
	mutex_unlock(ap_k.text_mutex);
	ap_retire(slots, n);
	mutex_unlock(&ap_lock);
	if (!bitmap_empty(ap_pending, AP_POOL_SLOTS))
		queue_work(ap_wq, &ap_reclaim_work);
out:
	kfree(slots);
	kfree(buf);
	return err ?: live;
}

/*
 * ap_withdraw splices the live sites at addrs out, leaving their
 * instruments in state; an address listed twice counts once. It returns
 * how many sites were withdrawn. Called with ap_lock held, and either
 * ap_op_lock (no insertion is in progress, so no live site has a
 * replacement's int3 over it, which ap_changed would take for another
 * patcher's) or from ap_withdraw_all, which disarms those first.
 */
u32 ap_withdraw(const u64 *addrs, u32 n, u32 state)
{
	/* Static, under ap_lock: withdrawing must not fail for want of memory. */
	static int slots[AP_POOL_SLOTS];
	static DECLARE_BITMAP(seen, AP_POOL_SLOTS);
	u32 i, nslots = 0;

	bitmap_zero(seen, AP_POOL_SLOTS);
	mutex_lock(ap_k.text_mutex);
	for (i = 0; i < n; i++) {
		struct ap_site *s = ap_site_of(addrs[i]);

		if (!s || s->state != AP_S_LIVE || test_and_set_bit(ap_slot_of(s), seen))
			continue;
		if (ap_changed(s)) {
			ap_mark_broken(s);	/* not ours any more: never touched again */
			continue;
		}
		ap_arm(s);
		slots[nslots++] = ap_slot_of(s);
	}
	ap_sync();
	for (i = 0; i < nslots; i++) {
		struct ap_site *s = &ap_sites[slots[i]];

		ap_poke(s->addr + 1, s->orig + 1, s->len - 1);
	}
	ap_sync();
	for (i = 0; i < nslots; i++) {
		struct ap_site *s = &ap_sites[slots[i]];

		ap_poke(s->addr, s->orig, 1);
	}
	ap_sync();
	mutex_unlock(ap_k.text_mutex);
	ap_retire(slots, nslots);
	for (i = 0; i < nslots; i++)
		ap_drop_site(&ap_sites[slots[i]], NULL, state);
	if (nslots)
		queue_work(ap_wq, &ap_reclaim_work);
	return nslots;
}

/*
 * ap_withdraw_all withdraws every site: first the ones armed by an
 * insertion waiting for quiescence (their first byte back), then the live
 * ones. Called with ap_lock held.
 */
void ap_withdraw_all(u32 state)
{
	static u64 addrs[AP_POOL_SLOTS];	/* under ap_lock, as in ap_withdraw */
	static int armed[AP_POOL_SLOTS];
	u32 i, n = 0, narmed = 0;

	mutex_lock(ap_k.text_mutex);
	for (i = 0; i < AP_POOL_SLOTS; i++) {
		struct ap_site *s = &ap_sites[i];

		if (s->state == AP_S_ARMED) {
			ap_disarm(s);
			armed[narmed++] = i;
		}
	}
	ap_sync();
	mutex_unlock(ap_k.text_mutex);
	ap_retire(armed, narmed);
	for (i = 0; i < narmed; i++) {
		struct ap_site *s = &ap_sites[armed[i]];

		ap_drop_site(s, s->replaces >= 0 ? &ap_sites[s->replaces] : NULL, state);
	}
	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (ap_sites[i].state == AP_S_LIVE)
			addrs[n++] = ap_sites[i].addr;
	ap_withdraw(addrs, n, state);
}

/*
 * ap_check_sites gives up every live site whose bytes were changed
 * underneath (by another patcher), pinning the module at once: the
 * dead-man work calls it on every tick, so that rmmod is refused rather
 * than noticing the change only while the module goes, too late to stay.
 * Called with ap_lock held.
 */
void ap_check_sites(void)
{
	u32 i;

	mutex_lock(ap_k.text_mutex);
	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (ap_sites[i].state == AP_S_LIVE && !ap_sites[i].covered && ap_changed(&ap_sites[i]))
			ap_mark_broken(&ap_sites[i]);
	mutex_unlock(ap_k.text_mutex);
}

/*
 * ap_reclaim_fn frees the trampoline slots and instrument slots that may
 * still be in use: after RCU-tasks no task is preempted inside a
 * trampoline (or between a trampoline's call and its handler's reading of
 * the instrument), after RCU-tasks-rude no idle task is interrupted there.
 */
static void ap_reclaim_fn(struct work_struct *w)
{
	DECLARE_BITMAP(slots, AP_POOL_SLOTS);
	unsigned long *insts;
	u32 i;

	insts = bitmap_zalloc(ap_max_insts, GFP_KERNEL);
	if (!insts)
		return;
	mutex_lock(&ap_reclaim_lock);
	mutex_lock(&ap_lock);
	bitmap_copy(slots, ap_pending, AP_POOL_SLOTS);
	ap_insts_pending(insts);
	mutex_unlock(&ap_lock);
	if (bitmap_empty(slots, AP_POOL_SLOTS) && bitmap_empty(insts, ap_max_insts))
		goto out;
	synchronize_rcu_tasks();
	synchronize_rcu_tasks_rude();
	mutex_lock(&ap_lock);
	for_each_set_bit(i, slots, AP_POOL_SLOTS)
		clear_bit(i, ap_pending);
	ap_insts_reclaim(insts);
	mutex_unlock(&ap_lock);
out:
	mutex_unlock(&ap_reclaim_lock);
	bitmap_free(insts);
}

/*
 * ap_sites_audit counts the trampoline slots in use (AP_IOC_AUDIT), marks
 * in named the instrument slots their sites name, and flags a site that
 * names an id no slot holds, and an int3 redirect that is not its armed
 * site's.
 */
void ap_sites_audit(struct ap_audit *a, unsigned long *named)
{
	u32 i, j, redirects = 0;

	for (i = 0; i < AP_POOL_SLOTS; i++) {
		const struct ap_site *s = &ap_sites[i];
		bool redirected = READ_ONCE(ap_int3_addr[i]) != 0;

		/* Under ap_lock a redirect is set exactly while its site is armed. */
		redirects += redirected;
		if (redirected != (s->state == AP_S_ARMED))
			a->broken |= AP_A_INT3;
		a->sites_pending += test_bit(i, ap_pending);
		if (s->state == AP_S_FREE)
			continue;
		a->sites++;
		if (s->ninst > AP_SITE_INSTS)
			a->broken |= AP_A_SITE_ID;
		for (j = 0; j < s->ninst && j < AP_SITE_INSTS; j++) {
			if (ap_inst_of(s->ids[j]))
				__set_bit(ap_id_slot(s->ids[j]), named);
			else
				a->broken |= AP_A_SITE_ID;
		}
	}
	if (redirects != atomic_read(&ap_int3_n))
		a->broken |= AP_A_INT3;
}

/* ap_short reports whether fewer than n slots are free of each kind. */
bool ap_short(u32 n)
{
	u32 i, slots = 0;

	for (i = 0; i < AP_POOL_SLOTS; i++)
		slots += ap_sites[i].state == AP_S_FREE && !test_bit(i, ap_pending);
	return slots < n || ap_insts_short(n);
}

/* ap_reclaim_flush waits until every withdrawn slot is free again. */
void ap_reclaim_flush(void)
{
	flush_work(&ap_reclaim_work);
	ap_reclaim_fn(NULL);
}

/*
 * ap_reclaim_wait waits, killably and for at most ten seconds, until n
 * slots of each kind are free: the reclaim worker frees them after
 * RCU-tasks. -EINTR on a fatal signal (kill -9 of the controller must not
 * wait for a grace period), -ENOSPC when they do not come free.
 */
int ap_reclaim_wait(u32 n)
{
	unsigned long until = jiffies + 10 * HZ;
	bool short_;

	for (;;) {
		mutex_lock(&ap_lock);
		short_ = ap_short(n);
		mutex_unlock(&ap_lock);
		if (!short_)
			return 0;
		if (time_after(jiffies, until))
			return -ENOSPC;
		queue_work(ap_wq, &ap_reclaim_work);
		schedule_timeout_killable(HZ / 50);
		if (fatal_signal_pending(current))
			return -EINTR;
	}
}

/*
 * ap_synthesize_clac turns the stubs' nops into CLAC and STAC under SMAP
 * (stubs.S), as optprobes' synthesize_clac does; without SMAP both are
 * undefined instructions, and AC gates nothing in the kernel.
 */
static void ap_synthesize_clac(void)
{
	static const u8 clac[3] = { 0x0f, 0x01, 0xca }, stac[3] = { 0x0f, 0x01, 0xcb };
	u8 *clacs[] = { ap_clac_enter, ap_clac_exit, ap_clac_exit_flags, ap_clac_count,
			ap_clac_count_flags };
	u8 *stacs[] = { ap_stac_enter, ap_stac_exit, ap_stac_count };
	int i;

	if (!boot_cpu_has(X86_FEATURE_SMAP))
		return;
	mutex_lock(ap_k.text_mutex);
	for (i = 0; i < ARRAY_SIZE(clacs); i++)
		ap_poke((unsigned long)clacs[i], clac, sizeof(clac));
	for (i = 0; i < ARRAY_SIZE(stacs); i++)
		ap_poke((unsigned long)stacs[i], stac, sizeof(stac));
	mutex_unlock(ap_k.text_mutex);
	ap_sync();
}

int ap_patch_init(void)
{
	int err;

	err = ap_insts_init();
	if (err)
		goto fail;
	err = -ENOMEM;
	ap_wq = alloc_workqueue("autoprof_splice", WQ_UNBOUND, 0);
	if (!ap_wq)
		goto fail;
	ap_synthesize_clac();
	err = register_die_notifier(&ap_int3_nb);
	if (!err)
		return 0;
fail:
	if (ap_wq)
		destroy_workqueue(ap_wq);
	ap_insts_exit();
	return err;
}

void ap_patch_exit(void)
{
	u32 i;

	ap_reclaim_flush();
	destroy_workqueue(ap_wq);	/* waits for every quiescence worker */
	for (i = 0; i < AP_POOL_SLOTS; i++)
		if (ap_sites[i].state != AP_S_FREE)
			pr_err("%pS still spliced at unload\n", (void *)ap_sites[i].addr);
	unregister_die_notifier(&ap_int3_nb);
	ap_insts_exit();
}
