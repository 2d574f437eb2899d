/* SPDX-License-Identifier: GPL-2.0 */
/*
 * splice.h - what the parts of autoprof_splice share.
 *
 * main.c: parameters, kernel identity and internals, /proc/autoprof_splice,
 *         sessions, the dead-man and overhead switches.
 * site.c: what a window may be: the checks against the kernel's own view
 *         of its text (kallsyms, the decoder, the tables other patchers keep).
 * tramp.c: trampolines, built from a window and its instruments' kinds.
 * patch.c: trampoline slots, the int3 redirect, splicing in and out,
 *          reclaim.
 * inst.c: instrument ids, their fast-path counter slots, what a read says
 *         of a reused id.
 * measure.c: threads, contexts, the handlers the trampolines call, the
 *            scheduler tracepoints.
 * stubs.S: the register-saving stubs; pool.S: the trampoline pool.
 */
#ifndef AUTOPROF_SPLICE_H
#define AUTOPROF_SPLICE_H

#include <linux/types.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/sched.h>
#include <linux/extable.h>
#include <linux/jump_label.h>
#include <asm/insn.h>

#include "uapi.h"

struct kprobe;

#define AP_SLOT_SIZE	512
#define AP_POOL_SLOTS	2048	/* trampoline slots: live sites */
#define AP_FAST_SLOTS	2048	/* counter fast-path slots */
#define AP_NONE		0xffffffffu

/*
 * Instrument ids: the slot in ap_insts in the low bits, the slot's
 * incarnation above, so that an id is never given twice while the module
 * is loaded (a slot's 65,535th reuse aside): a late hit of a withdrawn
 * instrument, or of a broken site of an earlier session, matches no live
 * instrument.
 */
#define AP_ID_SLOT_BITS	16
#define AP_MAX_INSTS	(1u << AP_ID_SLOT_BITS)

static inline u32 ap_id_slot(u32 id)
{
	return id & (AP_MAX_INSTS - 1);
}

/* The kernel internals the loader passed in that are data, each checked at load. */
struct ap_kernel {
	struct mutex *text_mutex;
	unsigned long stext, etext;
	const struct exception_table_entry *ex_start, *ex_stop;
	const struct jump_entry *jump_start, *jump_stop;
	void (**return_thunk)(void);	/* x86_return_thunk: where returns go */
};
extern struct ap_kernel ap_k;

/*
 * The unexported kernel functions the module calls: direct calls through
 * static calls that main.c retargets at load, never through a pointer
 * (under IBT the kernel seals most of them: no ENDBR is left to land on).
 */
void *ap_text_poke(void *addr, const void *opcode, size_t len);
int ap_insn_decode(struct insn *insn, const void *kaddr, int len);
int ap_jump_label_reserved(void *start, void *end);
int ap_static_call_reserved(void *start, void *end);
int ap_ftrace_reserved(const void *start, const void *end);
int ap_alternatives_reserved(void *start, void *end);
bool ap_kprobe_blacklisted(unsigned long addr);
bool ap_kprobe_at(unsigned long addr);

/* An instrument, by the slot of its id. */
struct ap_inst {
	u32 id;			/* 0 when the slot is free */
	u32 kind;
	u32 state;		/* enum ap_state */
	u32 fast;		/* counter fast-path slot, or AP_NONE */
	u32 npids;
	s32 pids[AP_MAX_PIDS];
};

/* Where a site is in its life. */
enum ap_site_state {
	AP_S_FREE,
	AP_S_READY,	/* its trampoline is written */
	AP_S_ARMED,	/* int3 at its first byte sends CPUs to its trampoline */
	AP_S_LIVE,	/* the jump is in */
	AP_S_BROKEN,	/* its bytes changed underneath: never touched again */
};

/* A splice site, by the slot of its trampoline. */
struct ap_site {
	unsigned long addr;
	u8 len, role;
	u8 state;		/* enum ap_site_state */
	u8 out;			/* AP_O_* */
	u8 covered;		/* live, with a replacement armed over its first byte */
	int replaces;		/* armed over the jump of this live slot, or -1 */
	u32 ninst;
	u32 ids[AP_SITE_INSTS];
	u8 orig[AP_MAX_WINDOW];	/* what the window held */
	u8 live[AP_MAX_WINDOW];	/* what it holds spliced: the jump, then nops */
};

/* Everything one session (one open file) owns. */
struct ap_session {
	u32 gen;
	unsigned long deadman;	/* jiffies without a beat before withdrawal */
	unsigned long last_beat;
	u32 dead;		/* AP_DEADMAN or AP_OVERLOAD once a switch fired */
	u32 limit_ppm;		/* the overhead kill switch's threshold */
	u64 start_ns;		/* ktime at AP_IOC_HELLO */
	u64 start_handler;	/* ap_handler_ns() then */
};

extern struct mutex ap_lock;	/* sessions, instruments, sites */
int ap_ready(struct ap_session *s);
extern struct ap_session *ap_cur;
extern struct ap_inst *ap_insts;
extern u32 ap_max_insts, ap_max_ctxs, ap_max_threads;
extern u32 ap_gen;		/* the live session's generation */
extern u64 __percpu *ap_fast;	/* fast-path counters, by slot */

DECLARE_PER_CPU(struct task_struct *, ap_root_task);
DECLARE_PER_CPU(u64, ap_misses[AP_M_N]);
DECLARE_PER_CPU(u64, ap_handler_time);	/* in ap_now() units */

/* ap_inst_of returns the slot of instrument id while it holds that id. */
static __always_inline struct ap_inst *ap_inst_of(u32 id)
{
	u32 slot = ap_id_slot(id);

	if (!slot || slot >= ap_max_insts || READ_ONCE(ap_insts[slot].id) != id)
		return NULL;
	return &ap_insts[slot];
}

/* stubs.S, pool.S */
extern u8 ap_pool[], ap_pool_end[];
void ap_stub_enter(void);
void ap_stub_exit(void);
void ap_stub_exit_flags(void);
void ap_stub_count(void);
void ap_stub_count_flags(void);
extern u8 ap_clac_enter[], ap_clac_exit[], ap_clac_exit_flags[];
extern u8 ap_clac_count[], ap_clac_count_flags[];
extern u8 ap_stac_enter[], ap_stac_exit[], ap_stac_count[];

/* site.c */
struct ap_window {
	unsigned long func, size;	/* the function (or part) kallsyms names */
	unsigned int entry;		/* offset of its entry site, 0 where none */
	unsigned long target;		/* a return window's tail-call or thunk target */
	u8 form;			/* enum ap_return_form of a return window */
	u8 cc;				/* a conditional tail call's condition */
};
int ap_check_site(struct ap_splice *sp, struct ap_window *w);
bool ap_ours(unsigned long addr);

/* tramp.c */
enum ap_return_form {
	AP_RET_PLAIN = 1,	/* ret; int3 padding */
	AP_RET_THUNK,		/* jmp to the return thunk */
	AP_RET_TAIL,		/* jmp to another function's start */
	AP_RET_TAIL_CC,		/* jcc to another function's start */
};
int ap_build(u8 *buf, unsigned long at, const struct ap_splice *sp,
	     const struct ap_window *w, const struct ap_inst **insts, u8 *out);
bool ap_insn_movable(const struct insn *insn);
bool ap_insn_ends(const struct insn *insn);
bool ap_insn_branch(const struct insn *insn, unsigned long at, unsigned long *to);

/* patch.c */
int ap_patch_init(void);
void ap_patch_exit(void);
int ap_insert(struct ap_session *ss, struct ap_splice *sp, u32 n);
u32 ap_withdraw(const u64 *addrs, u32 n, u32 state);
void ap_withdraw_all(u32 state);
void ap_check_sites(void);
bool ap_broken(void);
void ap_reclaim_flush(void);
int ap_reclaim_wait(u32 n);
bool ap_short(u32 n);
struct ap_site *ap_site_of(unsigned long addr);
struct ap_site *ap_site_of_slot(u32 slot);
void ap_sites_audit(struct ap_audit *a, unsigned long *named);

/* inst.c */
int ap_insts_init(void);
void ap_insts_exit(void);
int ap_claim_insts(struct ap_splice *sp, const struct ap_site *old, u32 *fresh);
void ap_unclaim(struct ap_splice *sp, u32 fresh);
void ap_retire_inst(u32 id, u32 state);
void ap_read_inst(struct ap_inst_read *r);
void ap_reset_insts(void);
bool ap_insts_short(u32 n);
void ap_insts_pending(unsigned long *dst);
void ap_insts_reclaim(const unsigned long *done);
void ap_insts_audit(struct ap_audit *a, const unsigned long *named);

/* measure.c */
void ap_enter(u32 id, unsigned long *slot);
void ap_exit(unsigned long *slot);
void ap_count(u32 id);
int ap_measure_init(void);
void ap_measure_exit(void);
void ap_measure_reset(void);
void *ap_area(void);
unsigned long ap_area_size(void);
unsigned long ap_cpu_offset(void);
unsigned long ap_cpu_stride(void);
u64 ap_handler_ns(void);
unsigned long ap_gs_current_off(void);
void ap_tramp_init(void);

static inline void ap_miss(enum ap_miss m)
{
	this_cpu_inc(ap_misses[m]);
}

#endif
