// SPDX-License-Identifier: GPL-2.0
/*
 * autoprof_splice - autoprof's code splicer: counters and timers spliced
 * into live kernel text (after GILK, Pearce et al., TOOLS'02).
 *
 * main.c: the parameters the loader passes (the kernel's identity and the
 * addresses of the unexported internals the splicer needs, each checked
 * here against kallsyms), the control file /proc/autoprof_splice, sessions,
 * and the two switches that withdraw everything by themselves: the
 * dead-man switch (no heartbeat) and the overhead kill switch (the
 * handlers take too much of the CPUs).
 *
 * The unexported kernel functions the module uses are reached through
 * static calls retargeted here at load (static_call_update): direct calls,
 * never an indirect call into the kernel. Under IBT the kernel seals the
 * ENDBR of every function whose address it never takes (insn_decode and
 * the *_text_reserved() checks among them), and an indirect call there
 * faults; the static calls' trampolines and inline sites jump directly.
 *
 * Only a holder of CAP_SYS_MODULE may open the control file, and not under
 * lockdown: a session writes kernel text, as a module or a debugger would.
 *
 * The control file is a proc entry, not a device, so that an open session
 * does not hold the module: procfs tracks the files open on an entry, and
 * removing the entry (at unload) waits for the calls in progress and then
 * runs release() for each of them, which withdraws the session's splices.
 * So rmmod with live splices withdraws them first; later calls on the file
 * fail (ENOTTY, EIO) in procfs itself. A device's file_operations would
 * need .owner, and the open file would pin the module.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/kallsyms.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <linux/version.h>
#include <linux/bitmap.h>
#include <linux/capability.h>
#include <linux/security.h>
#include <linux/static_call.h>
#include <linux/ktime.h>
#include <linux/rcupdate.h>
#include <linux/err.h>
#include <asm/cpufeature.h>
#include <asm/current.h>
#include <asm/ibt.h>

#include "splice.h"

static char *release = "";
module_param(release, charp, 0400);
MODULE_PARM_DESC(release, "uname -r of the kernel the controller analysed");
static char *build_id = "";
module_param(build_id, charp, 0400);
MODULE_PARM_DESC(build_id, "GNU build id of that kernel's vmlinux, in hex");

static unsigned long text_mutex_addr, build_id_addr, stext_addr, etext_addr;
static unsigned long ex_start_addr, ex_stop_addr, jump_start_addr, jump_stop_addr, thunk_addr;
module_param_named(text_mutex, text_mutex_addr, ulong, 0400);
module_param_named(vmlinux_build_id, build_id_addr, ulong, 0400);
module_param_named(stext, stext_addr, ulong, 0400);
module_param_named(etext, etext_addr, ulong, 0400);
module_param_named(start_ex_table, ex_start_addr, ulong, 0400);
module_param_named(stop_ex_table, ex_stop_addr, ulong, 0400);
module_param_named(start_jump_table, jump_start_addr, ulong, 0400);
module_param_named(stop_jump_table, jump_stop_addr, ulong, 0400);
module_param_named(x86_return_thunk, thunk_addr, ulong, 0400);

static unsigned long text_poke_addr, insn_decode_addr, jump_label_addr, static_call_addr;
static unsigned long ftrace_addr, alternatives_addr, blacklist_addr, get_kprobe_addr;
module_param_named(text_poke, text_poke_addr, ulong, 0400);
module_param_named(insn_decode, insn_decode_addr, ulong, 0400);
module_param_named(jump_label_text_reserved, jump_label_addr, ulong, 0400);
module_param_named(static_call_text_reserved, static_call_addr, ulong, 0400);
module_param_named(ftrace_text_reserved, ftrace_addr, ulong, 0400);
module_param_named(alternatives_text_reserved, alternatives_addr, ulong, 0400);
module_param_named(within_kprobe_blacklist, blacklist_addr, ulong, 0400);
module_param_named(get_kprobe, get_kprobe_addr, ulong, 0400);

u32 ap_max_insts = AP_MAX_INSTS, ap_max_ctxs = 16384, ap_max_threads = 4096;
module_param_named(max_insts, ap_max_insts, uint, 0400);
module_param_named(max_ctxs, ap_max_ctxs, uint, 0400);
module_param_named(max_threads, ap_max_threads, uint, 0400);

/*
 * The kernel functions, as static calls. Until main.c links them, each
 * answers as a refusal would.
 */
static void *ap_unlinked_poke(void *addr, const void *opcode, size_t len) { return NULL; }
static int ap_unlinked_decode(struct insn *insn, const void *kaddr, int len, enum insn_mode m) { return -EINVAL; }
static int ap_unlinked_reserved(void *start, void *end) { return 1; }
static int ap_unlinked_ftrace(const void *start, const void *end) { return 1; }
static bool ap_unlinked_blacklist(unsigned long addr) { return true; }
static struct kprobe *ap_unlinked_get_kprobe(void *addr) { return ERR_PTR(-ENOENT); }

DEFINE_STATIC_CALL(ap_k_text_poke, ap_unlinked_poke);
DEFINE_STATIC_CALL(ap_k_insn_decode, ap_unlinked_decode);
DEFINE_STATIC_CALL(ap_k_jump_label, ap_unlinked_reserved);
DEFINE_STATIC_CALL(ap_k_static_call, ap_unlinked_reserved);
DEFINE_STATIC_CALL(ap_k_ftrace, ap_unlinked_ftrace);
DEFINE_STATIC_CALL(ap_k_alternatives, ap_unlinked_reserved);
DEFINE_STATIC_CALL(ap_k_blacklist, ap_unlinked_blacklist);
DEFINE_STATIC_CALL(ap_k_get_kprobe, ap_unlinked_get_kprobe);

void *ap_text_poke(void *addr, const void *opcode, size_t len)
{
	return static_call(ap_k_text_poke)(addr, opcode, len);
}

int ap_insn_decode(struct insn *insn, const void *kaddr, int len)
{
	return static_call(ap_k_insn_decode)(insn, kaddr, len, INSN_MODE_64);
}

int ap_jump_label_reserved(void *start, void *end)
{
	return static_call(ap_k_jump_label)(start, end);
}

int ap_static_call_reserved(void *start, void *end)
{
	return static_call(ap_k_static_call)(start, end);
}

int ap_ftrace_reserved(const void *start, const void *end)
{
	return static_call(ap_k_ftrace)(start, end);
}

int ap_alternatives_reserved(void *start, void *end)
{
	return static_call(ap_k_alternatives)(start, end);
}

bool ap_kprobe_blacklisted(unsigned long addr)
{
	return static_call(ap_k_blacklist)(addr);
}

/*
 * ap_kprobe_at reports whether a kprobe is registered at addr, as the
 * kernel's recover_probed_instruction() asks before it decodes an int3:
 * get_kprobe() walks the kprobe table under RCU. A kprobe registered but
 * not yet armed counts too (its int3 waits for text_mutex, which the
 * caller holds).
 */
bool ap_kprobe_at(unsigned long addr)
{
	bool found;

	rcu_read_lock();
	found = static_call(ap_k_get_kprobe)((void *)addr) != NULL;
	rcu_read_unlock();
	return found;
}

/* The kernel functions by parameter: the symbol, and the static call it links. */
struct ap_func {
	const char *name;
	unsigned long *addr;
	struct static_call_key *key;
	void *tramp;
};

#define AP_FUNC(sym, param, call) \
	{ #sym, &param, &STATIC_CALL_KEY(call), STATIC_CALL_TRAMP_ADDR(call) }

static const struct ap_func ap_funcs[] = {
	AP_FUNC(text_poke, text_poke_addr, ap_k_text_poke),
	AP_FUNC(insn_decode, insn_decode_addr, ap_k_insn_decode),
	AP_FUNC(jump_label_text_reserved, jump_label_addr, ap_k_jump_label),
	AP_FUNC(static_call_text_reserved, static_call_addr, ap_k_static_call),
	AP_FUNC(ftrace_text_reserved, ftrace_addr, ap_k_ftrace),
	AP_FUNC(alternatives_text_reserved, alternatives_addr, ap_k_alternatives),
	AP_FUNC(within_kprobe_blacklist, blacklist_addr, ap_k_blacklist),
	AP_FUNC(get_kprobe, get_kprobe_addr, ap_k_get_kprobe),
};

struct ap_kernel ap_k;
DEFINE_MUTEX(ap_lock);
struct ap_session *ap_cur;
struct ap_inst *ap_insts;
u32 ap_gen;

static u8 ap_build_id[20];

#define AP_DEADMAN_MAX_MS 30000

static void ap_deadman_fn(struct work_struct *w);
static DECLARE_DELAYED_WORK(ap_deadman_work, ap_deadman_fn);

/* ap_is_sym checks that kallsyms names addr as the start of name. */
static int ap_is_sym(unsigned long addr, const char *name)
{
	char buf[KSYM_SYMBOL_LEN], want[KSYM_NAME_LEN + 8];

	if (!addr) {
		pr_err("no address given for %s\n", name);
		return -EINVAL;
	}
	sprint_symbol(buf, addr);
	snprintf(want, sizeof(want), "%s+0x0/", name);
	if (strncmp(buf, want, strlen(want)) || strchr(buf, ' ')) {
		pr_err("%s: address %px is %s\n", name, (void *)addr, buf);
		return -EINVAL;
	}
	return 0;
}

/* ap_in_core reports whether kallsyms places addr in the core kernel. */
static bool ap_in_core(unsigned long addr)
{
	char buf[KSYM_SYMBOL_LEN];

	sprint_symbol(buf, addr);
	return strchr(buf, '+') && !strchr(buf, ' ');
}

/*
 * ap_is_entry checks that a function the module calls starts the way an
 * IBT kernel starts functions: with ENDBR, or with the nop that seals it
 * (the module's calls are direct: a sealed entry is as good). A kernel
 * without IBT marks no entry.
 */
static int ap_is_entry(unsigned long addr, const char *name)
{
	u32 first;

	if (!cpu_feature_enabled(X86_FEATURE_IBT))
		return 0;
	memcpy(&first, (void *)addr, sizeof(first));
	if (is_endbr(first))
		return 0;
	pr_err("%s at %px starts with neither ENDBR nor its seal (%08x)\n", name, (void *)addr, first);
	return -EINVAL;
}

/* ap_in_text reports whether addr is in the core kernel's text. */
static bool ap_in_text(unsigned long addr)
{
	return addr >= stext_addr && addr < etext_addr;
}

/* ap_table checks the bounds of a table of entries of size bytes. */
static bool ap_table(unsigned long start, unsigned long stop, size_t size)
{
	return start <= stop && stop - start <= SZ_16M && (stop - start) % size == 0;
}

static int ap_check_data(void)
{
	/*
	 * The ends of the tables are checked by their size: kallsyms may name
	 * another symbol at the same address (__stop___jump_table is
	 * __start_static_call_sites).
	 */
	static const struct {
		const char *name;
		unsigned long *addr;
	} data[] = {
		{ "text_mutex", &text_mutex_addr },
		{ "vmlinux_build_id", &build_id_addr },
		{ "__start___ex_table", &ex_start_addr },
		{ "__start___jump_table", &jump_start_addr },
		{ "x86_return_thunk", &thunk_addr },
	};
	unsigned long self = (unsigned long)ap_check_data;
	int err = 0;
	u32 i;

	for (i = 0; i < ARRAY_SIZE(data) && !err; i++)
		err = ap_is_sym(*data[i].addr, data[i].name);
	if (err)
		return err;
	if (!stext_addr || stext_addr >= etext_addr || etext_addr - stext_addr > SZ_1G ||
	    ap_in_text(self) || !ap_in_core(stext_addr) || !ap_in_core(etext_addr - 1) ||
	    !ap_table(ex_start_addr, ex_stop_addr, sizeof(struct exception_table_entry)) ||
	    !ap_table(jump_start_addr, jump_stop_addr, sizeof(struct jump_entry))) {
		pr_err("kernel text [%px, %px) is not the core kernel's\n",
		       (void *)stext_addr, (void *)etext_addr);
		return -EINVAL;
	}
	ap_k.text_mutex = (struct mutex *)text_mutex_addr;
	ap_k.stext = stext_addr;
	ap_k.etext = etext_addr;
	ap_k.ex_start = (void *)ex_start_addr;
	ap_k.ex_stop = (void *)ex_stop_addr;
	ap_k.jump_start = (void *)jump_start_addr;
	ap_k.jump_stop = (void *)jump_stop_addr;
	ap_k.return_thunk = (void *)thunk_addr;
	return 0;
}

/*
 * ap_link checks each kernel function's address (kallsyms names it, it is
 * in core text, it starts as a function) and retargets its static call.
 */
static int ap_link(void)
{
	const struct ap_func *f;
	int err;

	for (f = ap_funcs; f < ap_funcs + ARRAY_SIZE(ap_funcs); f++) {
		err = ap_is_sym(*f->addr, f->name);
		if (!err && !ap_in_text(*f->addr))
			err = -EINVAL;
		err = err ?: ap_is_entry(*f->addr, f->name);
		if (err)
			return err;
	}
	for (f = ap_funcs; f < ap_funcs + ARRAY_SIZE(ap_funcs); f++)
		__static_call_update(f->key, f->tramp, (void *)*f->addr);
	return 0;
}

/* ap_identity checks that this is the kernel the controller analysed. */
static int ap_identity(const char *rel, const u8 *bid, size_t len)
{
	if (strcmp(rel, init_utsname()->release)) {
		pr_err("built for %s, running %s\n", rel, init_utsname()->release);
		return -ESTALE;
	}
	if (len != sizeof(ap_build_id) || memcmp(bid, (void *)build_id_addr, len)) {
		pr_err("vmlinux build id differs from the one analysed\n");
		return -ESTALE;
	}
	return 0;
}

unsigned long ap_gs_current_off(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0) && LINUX_VERSION_CODE < KERNEL_VERSION(6, 15, 0)
	return (unsigned long)&pcpu_hot.current_task;
#else
	return (unsigned long)&current_task;
#endif
}

static void ap_beat(struct ap_session *s)
{
	WRITE_ONCE(s->last_beat, jiffies);
}

#define AP_DEFAULT_OVERHEAD_PPM	50000	/* 5% of all CPUs (SAFETY D.20) */
#define AP_OVERHEAD_WINDOW_NS	NSEC_PER_SEC

/* The overhead kill switch's window: since when, and the handler time then. */
static u64 ap_window_at, ap_window_handler;
static u32 ap_last_ppm;

/*
 * ap_overloaded reports, once a window of a second has passed, whether
 * the handlers took more than the session's share of all CPUs in it.
 */
static bool ap_overloaded(struct ap_session *s)
{
	u64 now = ktime_get_ns(), handler = ap_handler_ns(), span = now - ap_window_at;

	if (span < AP_OVERHEAD_WINDOW_NS)
		return false;
	ap_last_ppm = div64_u64((handler - ap_window_handler) * 1000000,
				span * num_online_cpus());
	ap_window_at = now;
	ap_window_handler = handler;
	return ap_last_ppm > s->limit_ppm;
}

/* ap_kill withdraws everything of session s by itself: state is why. */
static void ap_kill(struct ap_session *s, u32 state)
{
	ap_withdraw_all(state);
	WRITE_ONCE(s->dead, state);
}

/*
 * The dead-man work, at least four times a second: it gives up the sites
 * changed underneath, and withdraws everything when the controller has not
 * called in for s->deadman or when the handlers cost too much.
 */
static void ap_deadman_fn(struct work_struct *w)
{
	struct ap_session *s;

	mutex_lock(&ap_lock);
	s = ap_cur;
	if (s && s->gen && !s->dead) {
		ap_check_sites();
		if (time_after(jiffies, READ_ONCE(s->last_beat) + s->deadman)) {
			pr_warn("no heartbeat for %u ms: withdrawing every splice\n",
				jiffies_to_msecs(s->deadman));
			ap_kill(s, AP_DEADMAN);
		} else if (ap_overloaded(s)) {
			pr_warn("the instruments took %u ppm of the CPUs, over the limit of %u: withdrawing every splice\n",
				ap_last_ppm, s->limit_ppm);
			ap_kill(s, AP_OVERLOAD);
		} else {
			schedule_delayed_work(&ap_deadman_work,
					      min_t(unsigned long, s->deadman / 4, HZ / 4) + 1);
		}
	}
	mutex_unlock(&ap_lock);
}

/* ap_allowed refuses a caller that may not write kernel text. */
static int ap_allowed(void)
{
	if (!capable(CAP_SYS_MODULE))
		return -EPERM;
	return security_locked_down(LOCKDOWN_DBG_WRITE_KERNEL);
}

static int ap_open(struct inode *inode, struct file *file)
{
	struct ap_session *s;
	int err;

	err = ap_allowed();
	if (err)
		return err;
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return -ENOMEM;
	mutex_lock(&ap_lock);
	if (ap_cur) {
		mutex_unlock(&ap_lock);
		kfree(s);
		return -EBUSY;
	}
	ap_cur = s;
	mutex_unlock(&ap_lock);
	file->private_data = s;
	return 0;
}

/*
 * ap_release ends a session: on close, on the death of its process, and
 * (through proc_remove) on rmmod. No ioctl of the file is in progress.
 */
static int ap_release(struct inode *inode, struct file *file)
{
	struct ap_session *s = file->private_data;

	cancel_delayed_work_sync(&ap_deadman_work);
	mutex_lock(&ap_lock);
	ap_withdraw_all(AP_WITHDRAWN);
	ap_cur = NULL;
	mutex_unlock(&ap_lock);
	kfree(s);
	return 0;
}

static long ap_info(void __user *arg)
{
	struct ap_info in = {
		.abi = AP_ABI,
		.info_size = sizeof(struct ap_info),
		.splice_size = sizeof(struct ap_splice),
		.stats_size = sizeof(struct ap_stats),
		.ncpus = nr_cpu_ids,
		.max_insts = ap_max_insts - 1,
		.max_live = AP_POOL_SLOTS,
		.max_counters = AP_FAST_SLOTS,
		.site_insts = AP_SITE_INSTS,
		.max_ctxs = ap_max_ctxs,
		.max_threads = ap_max_threads,
		.max_depth = AP_MAX_DEPTH,
		.slot_size = AP_SLOT_SIZE,
		.smap = boot_cpu_has(X86_FEATURE_SMAP),
		.pool_start = (unsigned long)ap_pool,
		.pool_end = (unsigned long)ap_pool_end,
		.stub_enter = (unsigned long)ap_stub_enter,
		.stub_exit = (unsigned long)ap_stub_exit,
		.stub_count = (unsigned long)ap_stub_count,
		.stub_exit_flags = (unsigned long)ap_stub_exit_flags,
		.stub_count_flags = (unsigned long)ap_stub_count_flags,
		.gs_current = ap_gs_current_off(),
		.gs_root_task = (unsigned long)&ap_root_task,
		.task_tgid = offsetof(struct task_struct, tgid),
		.map_size = ap_area_size(),
		.ctx_offset = PAGE_SIZE,
		.cpu_offset = ap_cpu_offset(),
		.cpu_stride = ap_cpu_stride(),
	};

	return copy_to_user(arg, &in, sizeof(in)) ? -EFAULT : 0;
}

static long ap_hello(struct ap_session *s, void __user *arg)
{
	struct ap_hello h;
	int err;

	if (copy_from_user(&h, arg, sizeof(h)))
		return -EFAULT;
	h.release[sizeof(h.release) - 1] = 0;
	err = ap_identity(h.release, h.build_id, h.build_id_len);
	if (err)
		return err;
	if (h.max_overhead_ppm > 1000000)
		return -EINVAL;
	ap_reclaim_flush();
	mutex_lock(&ap_lock);
	if (s->gen) {
		mutex_unlock(&ap_lock);
		return -EALREADY;
	}
	ap_measure_reset();
	ap_reset_insts();
	s->gen = ap_gen;
	s->deadman = msecs_to_jiffies(min_t(u32, h.deadman_ms ?: AP_DEADMAN_MAX_MS,
					    AP_DEADMAN_MAX_MS));
	s->limit_ppm = h.max_overhead_ppm ?: AP_DEFAULT_OVERHEAD_PPM;
	s->start_ns = ktime_get_ns();
	s->start_handler = ap_handler_ns();
	ap_window_at = s->start_ns;
	ap_window_handler = s->start_handler;
	ap_last_ppm = 0;
	ap_beat(s);
	schedule_delayed_work(&ap_deadman_work, s->deadman / 4 + 1);
	mutex_unlock(&ap_lock);
	return 0;
}

/* ap_ready says whether session s may splice now. */
int ap_ready(struct ap_session *s)
{
	if (!s->gen)
		return -ENOTCONN;	/* no AP_IOC_HELLO yet */
	switch (READ_ONCE(s->dead)) {
	case AP_DEADMAN:
		return -ETIMEDOUT;	/* the dead-man switch fired */
	case AP_OVERLOAD:
		return -EOVERFLOW;	/* the overhead kill switch fired */
	}
	return 0;
}

/* Insertions and withdrawals, one at a time (the switches and release() need only ap_lock). */
static DEFINE_MUTEX(ap_op_lock);

static long ap_ioc_insert(struct ap_session *s, void __user *arg)
{
	struct ap_batch b;
	struct ap_splice *sp;
	long err;

	err = ap_allowed();
	if (err)
		return err;
	if (copy_from_user(&b, arg, sizeof(b)))
		return -EFAULT;
	if (b.n == 0 || b.n > AP_POOL_SLOTS)
		return -EINVAL;
	sp = kvmalloc_array(b.n, sizeof(*sp), GFP_KERNEL);
	if (!sp)
		return -ENOMEM;
	if (copy_from_user(sp, u64_to_user_ptr(b.ptr), b.n * sizeof(*sp))) {
		err = -EFAULT;
		goto out;
	}
	mutex_lock(&ap_op_lock);
	/* Slots withdrawn a moment ago come back after RCU-tasks. */
	err = ap_reclaim_wait(b.n);
	if (!err)
		err = ap_insert(s, sp, b.n);
	mutex_unlock(&ap_op_lock);
	if (err >= 0) {
		b.done = err;
		err = 0;
	}
	if (!err && (copy_to_user(u64_to_user_ptr(b.ptr), sp, b.n * sizeof(*sp)) ||
		     copy_to_user(arg, &b, sizeof(b))))
		err = -EFAULT;
out:
	kvfree(sp);
	return err;
}

static long ap_ioc_withdraw(struct ap_session *s, void __user *arg)
{
	struct ap_batch b;
	u64 *addrs;
	long err = 0;

	if (copy_from_user(&b, arg, sizeof(b)))
		return -EFAULT;
	if (b.n == 0 || b.n > AP_POOL_SLOTS)
		return -EINVAL;
	addrs = kvmalloc_array(b.n, sizeof(*addrs), GFP_KERNEL);
	if (!addrs)
		return -ENOMEM;
	if (copy_from_user(addrs, u64_to_user_ptr(b.ptr), b.n * sizeof(*addrs))) {
		err = -EFAULT;
		goto out;
	}
	mutex_lock(&ap_op_lock);
	mutex_lock(&ap_lock);
	if (!s->gen)
		err = -ENOTCONN;
	else
		b.done = ap_withdraw(addrs, b.n, AP_WITHDRAWN);
	mutex_unlock(&ap_lock);
	mutex_unlock(&ap_op_lock);
	if (!err && copy_to_user(arg, &b, sizeof(b)))
		err = -EFAULT;
out:
	kvfree(addrs);
	return err;
}

static long ap_ioc_read(struct ap_session *s, void __user *arg)
{
	struct ap_inst_read *out;
	struct ap_read r;
	long err = 0;
	u32 i;
	int cpu;

	if (copy_from_user(&r, arg, sizeof(r)))
		return -EFAULT;
	if (r.n > AP_MAX_READ)
		return -EINVAL;
	out = kvcalloc(r.n ?: 1, sizeof(*out), GFP_KERNEL);
	if (!out)
		return -ENOMEM;
	if (r.n && copy_from_user(out, u64_to_user_ptr(r.ptr), r.n * sizeof(*out))) {
		err = -EFAULT;
		goto out;
	}
	mutex_lock(&ap_lock);
	for (i = 0; i < r.n; i++)
		ap_read_inst(&out[i]);
	memset(r.misses, 0, sizeof(r.misses));
	for_each_possible_cpu(cpu)
		for (i = 0; i < AP_M_N; i++)
			r.misses[i] += per_cpu(ap_misses[i], cpu);
	mutex_unlock(&ap_lock);
	if (r.n && copy_to_user(u64_to_user_ptr(r.ptr), out, r.n * sizeof(*out)))
		err = -EFAULT;
	else if (copy_to_user(arg, &r, sizeof(r)))
		err = -EFAULT;
out:
	kvfree(out);
	return err;
}

static long ap_ioc_status(struct ap_session *s, void __user *arg)
{
	struct ap_status st = {};

	mutex_lock(&ap_lock);
	if (s->gen) {
		st.handler_ns = ap_handler_ns() - s->start_handler;
		st.elapsed_ns = ktime_get_ns() - s->start_ns;
		st.last_ppm = ap_last_ppm;
		st.limit_ppm = s->limit_ppm;
		st.dead = s->dead;
	}
	mutex_unlock(&ap_lock);
	return copy_to_user(arg, &st, sizeof(st)) ? -EFAULT : 0;
}

/* ap_ioc_audit checks the module's bookkeeping against itself (AP_IOC_AUDIT). */
static long ap_ioc_audit(void __user *arg)
{
	struct ap_audit a = {};
	unsigned long *named;

	named = bitmap_zalloc(ap_max_insts, GFP_KERNEL);
	if (!named)
		return -ENOMEM;
	mutex_lock(&ap_lock);
	ap_sites_audit(&a, named);
	ap_insts_audit(&a, named);
	mutex_unlock(&ap_lock);
	bitmap_free(named);
	return copy_to_user(arg, &a, sizeof(a)) ? -EFAULT : 0;
}

/*
 * ap_ioctl validates the request (the whole command: number, direction
 * and size) before anything else; a request of another size is ENOTTY.
 */
static long ap_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ap_session *s = file->private_data;
	void __user *p = (void __user *)arg;

	if (cmd != AP_IOC_INFO && cmd != AP_IOC_HELLO && cmd != AP_IOC_AUDIT && s->gen)
		ap_beat(s);
	switch (cmd) {
	case AP_IOC_INFO:
		return ap_info(p);
	case AP_IOC_HELLO:
		return ap_hello(s, p);
	case AP_IOC_INSERT:
		return ap_ioc_insert(s, p);
	case AP_IOC_WITHDRAW:
		return ap_ioc_withdraw(s, p);
	case AP_IOC_BEAT:
		return ap_ready(s);
	case AP_IOC_READ:
		return ap_ioc_read(s, p);
	case AP_IOC_STATUS:
		return ap_ioc_status(s, p);
	case AP_IOC_AUDIT:
		return ap_ioc_audit(p);
	}
	return -ENOTTY;
}

/* ap_mmap maps the statistics read-only. */
static int ap_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (vma->vm_flags & (VM_WRITE | VM_EXEC))
		return -EPERM;
	if (vma->vm_pgoff || vma->vm_end - vma->vm_start > ap_area_size())
		return -EINVAL;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_clear(vma, VM_MAYWRITE | VM_MAYEXEC);
#else
	vma->vm_flags &= ~(VM_MAYWRITE | VM_MAYEXEC);
#endif
	return remap_vmalloc_range(vma, ap_area(), 0);
}

/* No .owner and no PROC_ENTRY_PERMANENT: see the top of this file. */
static const struct proc_ops ap_proc_ops = {
	.proc_open = ap_open,
	.proc_release = ap_release,
	.proc_ioctl = ap_ioctl,
	.proc_mmap = ap_mmap,
	.proc_lseek = noop_llseek,
};

static struct proc_dir_entry *ap_proc;

static int ap_parse_build_id(void)
{
	if (strlen(build_id) != 2 * sizeof(ap_build_id) ||
	    hex2bin(ap_build_id, build_id, sizeof(ap_build_id))) {
		pr_err("build_id must be %zu hex digits\n", 2 * sizeof(ap_build_id));
		return -EINVAL;
	}
	return 0;
}

/* ap_check_percpu checks the %gs offsets the fast path reads. */
static int ap_check_percpu(void)
{
	struct task_struct **cur;
	int ok;

	preempt_disable();
	cur = per_cpu_ptr((struct task_struct * __percpu *)ap_gs_current_off(), smp_processor_id());
	ok = *cur == current;
	preempt_enable();
	if (!ok) {
		pr_err("the per-CPU current task is not where expected\n");
		return -EINVAL;
	}
	return 0;
}

static int __init ap_init(void)
{
	int err;

	if (ap_pool_end - ap_pool != AP_SLOT_SIZE * AP_POOL_SLOTS) {
		pr_err("stubs.S and splice.h disagree on the pool's size\n");
		return -EINVAL;
	}
	if (ap_max_insts < 2 || ap_max_insts > AP_MAX_INSTS || ap_max_ctxs < 2 ||
	    ap_max_ctxs > (1 << 24) || ap_max_threads < 1 || ap_max_threads > (1 << 20))
		return -EINVAL;
	err = ap_allowed();
	err = err ?: ap_parse_build_id();
	err = err ?: ap_check_data();
	err = err ?: ap_identity(release, ap_build_id, sizeof(ap_build_id));
	err = err ?: ap_check_percpu();
	err = err ?: ap_link();
	if (err)
		return err;
	ap_tramp_init();
	ap_insts = vzalloc(array_size(ap_max_insts, sizeof(*ap_insts)));
	if (!ap_insts)
		return -ENOMEM;
	err = ap_measure_init();
	if (err)
		goto fail_insts;
	err = ap_patch_init();
	if (err)
		goto fail_measure;
	ap_proc = proc_create(AP_PROC_NAME, 0600, NULL, &ap_proc_ops);
	if (!ap_proc) {
		pr_err("cannot create /proc/%s\n", AP_PROC_NAME);
		err = -EEXIST;
		goto fail_patch;
	}
	pr_info("ready for %s, %u trampoline slots at %px\n",
		init_utsname()->release, AP_POOL_SLOTS, ap_pool);
	return 0;
fail_patch:
	ap_patch_exit();
fail_measure:
	ap_measure_exit();
fail_insts:
	vfree(ap_insts);
	return err;
}

static void __exit ap_exit_module(void)
{
	/*
	 * An open session is released here (procfs calls ap_release): its
	 * splices are withdrawn. No return address was ever replaced, so no
	 * task sleeping in a timed function can come back into the module.
	 */
	proc_remove(ap_proc);
	cancel_delayed_work_sync(&ap_deadman_work);
	mutex_lock(&ap_lock);
	ap_withdraw_all(AP_WITHDRAWN);	/* nothing is live: release() ran */
	mutex_unlock(&ap_lock);
	if (ap_broken()) {
		/*
		 * A site changed underneath since the last dead-man tick, seen
		 * only now that the module goes: it may still jump into a
		 * trampoline (a kprobe on our jump runs a copy of it), and our
		 * text is freed when this returns. Stay here rather than free it.
		 */
		pr_crit("a site changed underneath: the module cannot go; rmmod waits for good\n");
		for (;;)
			schedule_timeout_idle(MAX_SCHEDULE_TIMEOUT);
	}
	/* No task may still run in our text: trampolines, stubs, handlers. */
	synchronize_rcu_tasks();
	synchronize_rcu_tasks_rude();
	ap_patch_exit();
	ap_measure_exit();
	synchronize_rcu_tasks();
	synchronize_rcu_tasks_rude();
	vfree(ap_insts);
	pr_info("unloaded\n");
}

module_init(ap_init);
module_exit(ap_exit_module);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("autoprof");
MODULE_DESCRIPTION("autoprof's code splicer: counters and timers in live kernel text");
