// SPDX-License-Identifier: GPL-2.0
/*
 * inst.c - instrument ids: the slots of ap_insts, their incarnations, the
 * fast-path counter slots of plain counters, and what AP_IOC_READ says of
 * an instrument after its slot was reused. Everything here runs under
 * ap_lock (patch.c's insert, withdraw and reclaim, main.c's read).
 *
 * An id is a slot and the slot's incarnation (splice.h): a slot is
 * reused, with the next incarnation, only after its instrument was
 * withdrawn and RCU-tasks passed (patch.c's reclaim worker), so an id
 * never names two instruments in one session.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/xarray.h>

#include "splice.h"

u64 __percpu *ap_fast;				/* [AP_FAST_SLOTS] */
static u32 ap_fast_owner[AP_FAST_SLOTS];	/* instrument id, 0 when free */
static u32 ap_free_fast = AP_FAST_SLOTS;

static u16 *ap_inc;		/* incarnation of each instrument slot */
static u32 ap_free_insts, ap_next_inst;

/* What AP_IOC_READ says of an instrument whose slot was reused. */
struct ap_retired {
	u64 fast;
	u32 state, kind;
};
static DEFINE_XARRAY(ap_retired);
static unsigned long *ap_inst_pending;	/* withdrawn, reclaimed after RCU-tasks */

/* ap_new_inst gives request r a fresh id (one is free: ap_claim_insts counted). */
static u32 ap_new_inst(const struct ap_inst_req *r)
{
	struct ap_inst *in;
	u32 slot = ap_next_inst, i;

	do {
		slot = slot + 1 < ap_max_insts ? slot + 1 : 1;
	} while (ap_insts[slot].id || test_bit(slot, ap_inst_pending));
	ap_next_inst = slot;
	ap_free_insts--;
	in = &ap_insts[slot];
	in->kind = r->kind;
	in->state = AP_FREE;
	in->fast = AP_NONE;
	in->npids = r->npids;
	memcpy(in->pids, r->pids, sizeof(in->pids));
	if (r->kind == AP_COUNT && r->npids <= 1) {
		for (i = 0; ap_fast_owner[i]; i++)
			;
		in->fast = i;
		ap_free_fast--;
	}
	WRITE_ONCE(in->id, slot | (u32)ap_inc[slot] << AP_ID_SLOT_BITS);
	if (in->fast != AP_NONE)
		ap_fast_owner[in->fast] = in->id;
	return in->id;
}

/* ap_fast_count returns the fast-path counts of instrument in. */
static u64 ap_fast_count(const struct ap_inst *in)
{
	u64 sum = 0;
	int cpu;

	if (in->fast != AP_NONE && ap_fast_owner[in->fast] == in->id)
		for_each_possible_cpu(cpu)
			sum += *per_cpu_ptr(ap_fast + in->fast, cpu);
	return sum;
}

/*
 * ap_free_inst frees the slot of an instrument nothing can run any more:
 * never published, or withdrawn and past RCU-tasks. Where it was live,
 * what AP_IOC_READ says of it is kept by its id; false when there is no
 * memory for that (the slot stays pending).
 */
static bool ap_free_inst(u32 slot, bool published)
{
	struct ap_inst *in = &ap_insts[slot];
	struct ap_retired *r;
	int cpu;

	if (published) {
		r = kmalloc(sizeof(*r), GFP_KERNEL);
		if (!r)
			return false;
		r->fast = ap_fast_count(in);
		r->state = in->state;
		r->kind = in->kind;
		if (xa_is_err(xa_store(&ap_retired, in->id, r, GFP_KERNEL))) {
			kfree(r);
			return false;
		}
	}
	if (in->fast != AP_NONE) {
		for_each_possible_cpu(cpu)
			*per_cpu_ptr(ap_fast + in->fast, cpu) = 0;
		ap_fast_owner[in->fast] = 0;
		ap_free_fast++;
	}
	WRITE_ONCE(in->id, 0);
	ap_inc[slot]++;
	ap_free_insts++;
	return true;
}

/* ap_retire_inst withdraws a live instrument: its slot is reclaimed after RCU-tasks. */
void ap_retire_inst(u32 id, u32 state)
{
	struct ap_inst *in = ap_inst_of(id);

	if (!in || in->state == AP_BROKEN)
		return;
	WRITE_ONCE(in->state, state);
	set_bit(ap_id_slot(id), ap_inst_pending);
}

/* ap_read_inst fills in what AP_IOC_READ says of instrument r->id. */
void ap_read_inst(struct ap_inst_read *r)
{
	struct ap_inst *in = ap_inst_of(r->id);
	struct ap_retired *old;

	r->pad = 0;
	if (in) {
		r->state = in->state;
		r->kind = in->kind;
		r->fast = ap_fast_count(in);
	} else if ((old = xa_load(&ap_retired, r->id))) {
		r->state = old->state;
		r->kind = old->kind;
		r->fast = old->fast;
	} else {
		r->state = AP_FREE;
		r->kind = 0;
		r->fast = 0;
	}
}

/*
 * ap_claim_insts checks the instruments of sp, then gives the new ones
 * ids (and counters their fast slots): every id in the request must be one
 * the replaced site (old) holds, of the same kind, and appear once, before
 * anything is claimed. fresh gets a bit for each instrument claimed here.
 */
int ap_claim_insts(struct ap_splice *sp, const struct ap_site *old, u32 *fresh)
{
	u32 i, j, nfresh = 0, nfast = 0;

	*fresh = 0;
	for (i = 0; i < sp->ninst; i++) {
		const struct ap_inst_req *r = &sp->insts[i];
		const struct ap_inst *in;

		if (r->kind < AP_COUNT || r->kind > AP_TIMER || r->npids > AP_MAX_PIDS)
			return -EINVAL;
		if (!r->id) {
			nfresh++;
			nfast += r->kind == AP_COUNT && r->npids <= 1;
			continue;
		}
		for (j = 0; old && j < old->ninst && old->ids[j] != r->id; j++)
			;
		in = ap_inst_of(r->id);
		if (!old || j == old->ninst || !in || in->kind != r->kind || in->state != AP_LIVE)
			return -EINVAL;
		for (j = 0; j < i; j++)
			if (sp->insts[j].id == r->id)
				return -EINVAL;
	}
	if (nfresh > ap_free_insts || nfast > ap_free_fast)
		return -ENOSPC;
	for (i = 0; i < sp->ninst; i++) {
		if (!sp->insts[i].id) {
			sp->insts[i].id = ap_new_inst(&sp->insts[i]);
			*fresh |= BIT(i);
		}
	}
	return 0;
}

/* ap_unclaim frees the ids ap_claim_insts gave that were never published. */
void ap_unclaim(struct ap_splice *sp, u32 fresh)
{
	u32 i;

	for (i = 0; i < sp->ninst; i++) {
		if (fresh & BIT(i)) {
			ap_free_inst(ap_id_slot(sp->insts[i].id), false);
			sp->insts[i].id = 0;
		}
	}
}

/* ap_insts_short reports whether fewer than n ids or fast slots are free. */
bool ap_insts_short(u32 n)
{
	return ap_free_insts < n || ap_free_fast < n;
}

/* ap_insts_pending copies the withdrawn slots waiting for RCU-tasks into dst. */
void ap_insts_pending(unsigned long *dst)
{
	bitmap_copy(dst, ap_inst_pending, ap_max_insts);
}

/* ap_insts_reclaim frees the slots of done, withdrawn before a grace period that has passed. */
void ap_insts_reclaim(const unsigned long *done)
{
	u32 i;

	for_each_set_bit(i, done, ap_max_insts)
		if (ap_free_inst(i, true))
			clear_bit(i, ap_inst_pending);
}

/*
 * ap_insts_audit checks the instrument and fast-path slots (AP_IOC_AUDIT):
 * every slot holding an id is named by a site (named, from
 * ap_sites_audit) or waits for reclaim, never both, the free counts are
 * the slots the walk finds free, and each fast slot and its owner name
 * each other.
 */
void ap_insts_audit(struct ap_audit *a, const unsigned long *named)
{
	const struct ap_inst *in;
	u32 i;

	a->insts_free = ap_free_insts;
	a->fast_free = ap_free_fast;
	if (ap_insts[0].id || test_bit(0, ap_inst_pending))
		a->broken |= AP_A_SLOT0;
	for (i = 1; i < ap_max_insts; i++) {
		bool pending = test_bit(i, ap_inst_pending);

		if (!ap_insts[i].id) {
			a->insts_unused++;
			if (pending)
				a->broken |= AP_A_PENDING;
			continue;
		}
		a->insts_pending += pending;
		if (!pending && !test_bit(i, named))
			a->broken |= AP_A_LEAK;
		if (pending && test_bit(i, named))
			a->broken |= AP_A_NAMED_PENDING;
		in = &ap_insts[i];
		if (in->fast != AP_NONE && (in->fast >= AP_FAST_SLOTS || ap_fast_owner[in->fast] != in->id))
			a->broken |= AP_A_FAST_OWNER;
	}
	if (a->insts_free != a->insts_unused)
		a->broken |= AP_A_INST_COUNT;
	for (i = 0; i < AP_FAST_SLOTS; i++) {
		if (!ap_fast_owner[i]) {
			a->fast_unused++;
			continue;
		}
		in = ap_inst_of(ap_fast_owner[i]);
		if (!in || in->fast != i)
			a->broken |= AP_A_FAST_OWNER;
	}
	if (a->fast_free != a->fast_unused)
		a->broken |= AP_A_FAST_COUNT;
}

/*
 * ap_reset_insts forgets a finished session's instruments. Their slots
 * are free (ap_reclaim_flush ran) but for those of broken sites, which
 * stay as they are; incarnations go on, so that no id of the new session
 * equals an old one.
 */
void ap_reset_insts(void)
{
	struct ap_retired *r;
	unsigned long id;

	xa_for_each(&ap_retired, id, r)
		kfree(r);
	xa_destroy(&ap_retired);
}

int ap_insts_init(void)
{
	ap_fast = __alloc_percpu(AP_FAST_SLOTS * sizeof(u64), PAGE_SIZE);
	ap_inc = vzalloc(array_size(ap_max_insts, sizeof(*ap_inc)));
	ap_inst_pending = bitmap_zalloc(ap_max_insts, GFP_KERNEL);
	if (!ap_fast || !ap_inc || !ap_inst_pending)
		return -ENOMEM;
	ap_free_insts = ap_max_insts - 1;	/* slot 0 is no instrument */
	return 0;
}

void ap_insts_exit(void)
{
	ap_reset_insts();
	bitmap_free(ap_inst_pending);
	vfree(ap_inc);
	free_percpu(ap_fast);
	ap_inst_pending = NULL;
	ap_inc = NULL;
	ap_fast = NULL;
}
