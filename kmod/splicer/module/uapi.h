/* SPDX-License-Identifier: GPL-2.0 */
/*
 * uapi.h - the interface between autoprof (user space) and autoprof_splice.
 *
 * The Go side (kmod/splicer/uapi.go) mirrors every structure here field by
 * field; AP_IOC_INFO reports the sizes the module was built with so that a
 * mismatch is caught before anything is spliced.
 *
 * A session is one open file of /proc/autoprof_splice: it owns every splice
 * made through it, and closing the file (or the death of its process, the
 * dead-man timer, the overhead kill switch, or rmmod) withdraws them all.
 *
 * The controller names places and instrument kinds, never code: the module
 * decodes each window itself, checks it and builds its trampoline.
 */
#ifndef AUTOPROF_SPLICE_UAPI_H
#define AUTOPROF_SPLICE_UAPI_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define AP_ABI		5
#define AP_PROC_NAME	"autoprof_splice"	/* in /proc */

#define AP_HIST		41	/* log2 buckets of inclusive ns, as splice.HistBuckets */
#define AP_MAX_DEPTH	32	/* shadow stack frames per thread */
#define AP_MAX_WINDOW	32	/* bytes of one splice window */
#define AP_MAX_PIDS	8	/* thread-group ids of one instrument's filter */
#define AP_SITE_INSTS	4	/* instruments sharing one site */
#define AP_NAME_LEN	128
#define AP_MAX_READ	(1 << 20)	/* instruments one AP_IOC_READ reports */

/* Instrument kinds, the values of splice.Kind. */
enum ap_kind {
	AP_COUNT = 1,	/* count executions of the site */
	AP_EXIT = 2,	/* count returns of the function */
	AP_TIMER = 3,	/* time entry to return, push a context frame */
};

/*
 * What a window is to its function, which decides what may go there. A
 * timer or an exit counter needs its function's entry window and a return
 * window at each of its returns and tail calls: a frame begins at the entry
 * and ends at the return whose stack pointer is the entry's, so that no
 * return address is ever replaced and every unwinder sees the real caller.
 */
enum ap_role {
	AP_BLOCK = 1,	/* whole instructions inside a function: counters */
	AP_ENTRY = 2,	/* the first ones after ENDBR and the ftrace site: any kind */
	AP_RETURN = 3,	/* a return or a tail call: no instrument, frames end here */
};

/* Misses, per CPU, the order of splice.Misses. */
enum ap_miss {
	AP_M_RECURSION,	/* a hit while a handler ran on the CPU, or in NMI */
	AP_M_DEPTH,	/* the shadow stack was full */
	AP_M_MAPFULL,	/* no room for a thread or a context */
	AP_M_UNMATCHED,	/* a frame that ended without its return being seen */
	AP_M_N,
};

/* Per-context statistics, per CPU, in the mapped area. */
struct ap_stats {
	__u64 calls;
	__u64 incl, excl;		/* wall ns */
	__u64 off_incl, off_excl;	/* off-CPU ns */
	__u64 hist[AP_HIST];
};

/* One entry of the context table: context id -> (parent context, instrument id). */
struct ap_ctx {
	__u32 parent;
	__u32 inst;
};

/* The first page of the mapped area. */
struct ap_header {
	__u64 magic;		/* AP_MAGIC */
	__u32 nctx;		/* contexts allocated so far, ids 1..nctx */
	__u32 gen;		/* session generation */
};

#define AP_MAGIC 0x61707370696365ULL	/* "apspice" */

/*
 * What the module tells the controller: its limits, where its trampolines
 * lie (a jump there from kernel text is one of ours), what they call and
 * read (for tests that compare them with splice/patch's reference
 * encoder), and the layout of the area that mmap maps read-only.
 *
 * Area layout: the header page; the context table (max_ctxs entries of
 * struct ap_ctx) at ctx_offset; then, for CPU c, max_ctxs struct ap_stats
 * at cpu_offset + c * cpu_stride.
 */
struct ap_info {
	__u32 abi;
	__u32 info_size, splice_size, stats_size;	/* sizeof the structures */
	__u32 ncpus;		/* nr_cpu_ids */
	__u32 max_insts;	/* instruments live at once */
	__u32 max_live;		/* trampoline slots (sites) */
	__u32 max_counters;	/* counter fast-path slots */
	__u32 site_insts;	/* instruments per site */
	__u32 max_ctxs, max_threads, max_depth;
	__u32 slot_size;	/* bytes of one trampoline slot */
	__u32 smap;		/* the CPU has SMAP (the stubs do CLAC) */
	__u64 pool_start, pool_end;	/* trampolines lie in [pool_start, pool_end) */
	__u64 stub_enter;	/* what entry windows of timers and exit counters call */
	__u64 stub_exit;	/* what return windows of compiled functions call */
	__u64 stub_count;	/* slow path of counters where the flags are dead */
	__u64 stub_exit_flags;	/* what other return windows call: flags kept */
	__u64 stub_count_flags;	/* slow path of counters where the flags are live */
	__u64 gs_current;	/* %gs offset of the current task pointer */
	__u64 gs_root_task;	/* %gs offset of the "at root context" task */
	__u64 task_tgid;	/* offsetof(struct task_struct, tgid) */
	__u64 map_size, ctx_offset, cpu_offset, cpu_stride;
};

/* AP_IOC_HELLO opens a session for the kernel the controller analysed. */
struct ap_hello {
	char release[65];	/* uname -r */
	__u8 build_id_len;
	__u8 build_id[20];	/* GNU build id of vmlinux, /sys/kernel/notes */
	__u8 pad[2];
	__u32 deadman_ms;	/* withdraw all after this long without a heartbeat */
	__u32 max_overhead_ppm;	/* withdraw all when the handlers take more of the CPUs (0: 5%) */
	__u32 pad2;
};

/* One instrument of a site. */
struct ap_inst_req {
	__u32 kind;		/* enum ap_kind */
	__u32 id;		/* in: 0 for a new one, or one the site holds; out: its id */
	__u32 npids;		/* 0: every process */
	__s32 pids[AP_MAX_PIDS];
};

/* AP_F_REPLACE: the site is spliced already; its trampoline is replaced. */
#define AP_F_REPLACE 1

/*
 * AP_O_FLAGS: the module found the flags live after the window: a block
 * window's counters save them, a return window's stub gives them back.
 */
#define AP_O_FLAGS 1

/*
 * One splice: where, in which function, what the window holds and which
 * instruments go there. With AP_F_REPLACE, the live jump at addr is
 * retargeted to a new trampoline; the site's instruments not listed again
 * are withdrawn.
 */
struct ap_splice {
	__u64 addr;		/* the site: the first byte of the window */
	__u64 func;		/* the function (or .cold part) holding it */
	char name[AP_NAME_LEN];	/* its name, as kallsyms prints it */
	__u8 len;		/* window length: whole instructions, >= 5 */
	__u8 role;		/* enum ap_role */
	__u16 pad0;
	__u32 flags;
	__u32 ninst;
	__u32 pad1;
	struct ap_inst_req insts[AP_SITE_INSTS];
	__u8 orig[AP_MAX_WINDOW];	/* the bytes expected at addr */
	/* Out: */
	__s32 err;		/* 0 or a negative errno for this splice */
	__u32 out;		/* AP_O_* */
	__u64 tramp;		/* where the trampoline went */
	__u32 tramp_len;
	__u32 pad2;
	char found[AP_NAME_LEN];	/* on -ENOENT: the name kallsyms gave; else why */
};

/* A batch: AP_IOC_INSERT (struct ap_splice[n]), AP_IOC_WITHDRAW (__u64 sites[n]). */
struct ap_batch {
	__u64 ptr;
	__u32 n;
	__u32 done;		/* out: how many were made live or withdrawn */
};

/* Instrument states, as AP_IOC_READ reports them. */
enum ap_state {
	AP_FREE = 0,		/* no such instrument in this session */
	AP_LIVE = 1,
	AP_WITHDRAWN = 2,
	AP_DEADMAN = 3,		/* withdrawn by the dead-man switch */
	AP_BROKEN = 4,		/* the site changed underneath: left alone */
	AP_OVERLOAD = 5,	/* withdrawn by the overhead kill switch */
};

/* One instrument of AP_IOC_READ: its id in, the rest out. */
struct ap_inst_read {
	__u32 id;
	__u32 state;
	__u32 kind;
	__u32 pad;
	__u64 fast;		/* root-context counts of the counter fast path */
};

/* AP_IOC_READ: the instruments asked for, then the misses summed over CPUs. */
struct ap_read {
	__u64 ptr;		/* struct ap_inst_read[n] */
	__u32 n;
	__u32 pad;
	__u64 misses[AP_M_N];
};

/*
 * AP_IOC_STATUS: what the instruments cost, as the overhead kill switch
 * measures it: time in the module's handlers (the counters' inline fast
 * path is not timed), summed over CPUs.
 */
struct ap_status {
	__u64 handler_ns;	/* since the session began */
	__u64 elapsed_ns;	/* since the session began */
	__u32 last_ppm;		/* of all CPUs' time, over the last window checked */
	__u32 limit_ppm;
	__u32 dead;		/* why everything was withdrawn: 0, AP_DEADMAN, AP_OVERLOAD */
	__u32 pad;
};

/*
 * AP_IOC_AUDIT: the module's bookkeeping checked against itself, by a walk
 * of every instrument, fast-path and trampoline slot under its lock: the
 * counts it keeps beside what the walk finds, and a bit of AP_A_* for each
 * rule broken. It needs no session (as AP_IOC_INFO): the tests ask it
 * while hostile requests run and after a session ends.
 */
struct ap_audit {
	__u32 insts_free;	/* free instrument slots, as allocation counts them */
	__u32 insts_unused;	/* slots holding no id, by the walk */
	__u32 insts_pending;	/* withdrawn, freed once RCU-tasks passed */
	__u32 fast_free;	/* free fast-path counter slots, as counted */
	__u32 fast_unused;	/* by the walk */
	__u32 sites;		/* trampoline slots in any state but free */
	__u32 sites_pending;	/* given back, reused once RCU-tasks passed */
	__u32 broken;		/* AP_A_*: the rules the walk found broken */
};

#define AP_A_SLOT0	(1u << 0)	/* slot 0, no instrument, holds an id */
#define AP_A_INST_COUNT	(1u << 1)	/* insts_free != insts_unused */
#define AP_A_PENDING	(1u << 2)	/* a slot waiting for reclaim holds no id */
#define AP_A_FAST_COUNT	(1u << 3)	/* fast_free != fast_unused */
#define AP_A_FAST_OWNER	(1u << 4)	/* a fast slot's owner does not name it */
#define AP_A_SITE_ID	(1u << 5)	/* a site names an id no slot holds */
#define AP_A_LEAK	(1u << 6)	/* a slot holds an id no site names, not pending */
#define AP_A_NAMED_PENDING (1u << 7)	/* a slot waiting for reclaim is named by a site */
#define AP_A_INT3	(1u << 8)	/* an int3 redirect without its armed site, or the reverse */

#define AP_IOC_MAGIC	0xAF
#define AP_IOC_INFO	_IOR(AP_IOC_MAGIC, 1, struct ap_info)
#define AP_IOC_HELLO	_IOW(AP_IOC_MAGIC, 2, struct ap_hello)
#define AP_IOC_INSERT	_IOWR(AP_IOC_MAGIC, 3, struct ap_batch)
#define AP_IOC_WITHDRAW	_IOWR(AP_IOC_MAGIC, 4, struct ap_batch)
#define AP_IOC_BEAT	_IO(AP_IOC_MAGIC, 5)	/* -ETIMEDOUT: dead-man fired; -EOVERFLOW: kill switch */
#define AP_IOC_READ	_IOWR(AP_IOC_MAGIC, 6, struct ap_read)
#define AP_IOC_STATUS	_IOR(AP_IOC_MAGIC, 7, struct ap_status)
#define AP_IOC_AUDIT	_IOR(AP_IOC_MAGIC, 8, struct ap_audit)

#endif
