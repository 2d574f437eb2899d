/* SPDX-License-Identifier: GPL-2.0 */
/*
 * splice.h - what the parts of autoprof_splice share.
 *
 * main.c: parameters, kernel identity, /proc/autoprof_splice, sessions,
 *         dead-man.
 * patch.c: trampoline slots, the int3 redirect, splicing in and out.
 * measure.c: threads, contexts, the handlers the trampolines call, the
 *            scheduler tracepoints.
 * stubs.S: the trampoline pool and the register-saving stubs.
 */
#ifndef AUTOPROF_SPLICE_H
#define AUTOPROF_SPLICE_H

#include <linux/types.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/sched.h>

#include "uapi.h"

#define AP_SLOT_SIZE	512
#define AP_POOL_SLOTS	2048	/* trampoline slots: live sites */
#define AP_FAST_SLOTS	2048	/* counter fast-path slots */
#define AP_NONE		0xffffffffu

/* The kernel internals the loader passed in, each checked at load. */
struct ap_kernel {
	void *(*text_poke)(void *addr, const void *opcode, size_t len);
	struct mutex *text_mutex;
	const void *(*search_extable)(unsigned long addr);
	unsigned long stext, etext;
};
extern struct ap_kernel ap_k;

/* An instrument, by id. */
struct ap_inst {
	u32 kind;
	u32 state;		/* enum ap_state */
	u32 fast;		/* counter fast-path slot, or AP_NONE */
	u32 npids;
	s32 pids[AP_MAX_PIDS];
};

/* A splice site, by the slot of its trampoline. */
struct ap_site {
	unsigned long addr;
	u8 len, ninsns;
	u8 busy;		/* the slot holds a site */
	u8 live;		/* the jump to this slot is in */
	u32 ninst;
	u32 ids[AP_SITE_INSTS];
	u8 orig[AP_MAX_WINDOW];
	u8 jmp[5];
};

/* Everything one session (one open file) owns. */
struct ap_session {
	u32 gen;
	u32 next_id;
	unsigned long deadman;	/* jiffies without a beat before withdrawal */
	unsigned long last_beat;
	bool dead;		/* the dead-man switch fired */
};

extern struct mutex ap_lock;	/* sessions, instruments, sites */
extern struct ap_session *ap_cur;
extern struct ap_inst *ap_insts;
extern u32 ap_max_insts, ap_max_ctxs, ap_max_threads;
extern u32 ap_gen;		/* the live session's generation */
extern u64 __percpu *ap_fast;	/* fast-path counters, by slot */

DECLARE_PER_CPU(struct task_struct *, ap_root_task);
DECLARE_PER_CPU(u64, ap_misses[AP_M_N]);

/* stubs.S */
extern u8 ap_pool[], ap_pool_end[];
void ap_stub_enter(void);
void ap_stub_count(void);
void ap_exit_tramp(void);
extern u8 ap_clac_enter[], ap_clac_count[], ap_clac_exit[];

/* patch.c */
int ap_patch_init(void);
void ap_patch_exit(void);
int ap_insert(struct ap_splice *sp, u32 n);
u32 ap_withdraw(const u64 *addrs, u32 n, u32 state);
void ap_withdraw_all(u32 state);
void ap_check_sites(void);
bool ap_broken(void);
void ap_reclaim_flush(void);
bool ap_short(u32 n);
u64 ap_fast_sum(u32 id);
void ap_reset_retired(void);

/* measure.c */
void ap_enter(u32 id, unsigned long *slot);
unsigned long ap_exit(unsigned long *sp);
void ap_count(u32 id);
int ap_measure_init(void);
void ap_measure_exit(void);
void ap_measure_reset(void);
void *ap_area(void);
unsigned long ap_area_size(void);
unsigned long ap_cpu_offset(void);
unsigned long ap_cpu_stride(void);
void ap_unhook_frames(void);

static inline void ap_miss(enum ap_miss m)
{
	this_cpu_inc(ap_misses[m]);
}

#endif
