// SPDX-License-Identifier: GPL-2.0
/*
 * autoprof_splice - autoprof's code splicer: counters and timers spliced
 * into live kernel text (after GILK, Pearce et al., TOOLS'02).
 *
 * main.c: the parameters the loader passes (the kernel's identity and the
 * addresses of the unexported internals the splicer needs, each checked
 * here against kallsyms), the control file /proc/autoprof_splice, sessions
 * and the dead-man switch.
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
#include <linux/capability.h>
#include <asm/cpufeature.h>
#include <asm/current.h>

#include "splice.h"

static char *release = "";
module_param(release, charp, 0400);
MODULE_PARM_DESC(release, "uname -r of the kernel the controller analysed");
static char *build_id = "";
module_param(build_id, charp, 0400);
MODULE_PARM_DESC(build_id, "GNU build id of that kernel's vmlinux, in hex");

static unsigned long text_poke_addr, text_mutex_addr, build_id_addr;
static unsigned long search_extable_addr, stext_addr, etext_addr;
module_param_named(text_poke, text_poke_addr, ulong, 0400);
module_param_named(text_mutex, text_mutex_addr, ulong, 0400);
module_param_named(vmlinux_build_id, build_id_addr, ulong, 0400);
module_param_named(search_exception_tables, search_extable_addr, ulong, 0400);
module_param_named(stext, stext_addr, ulong, 0400);
module_param_named(etext, etext_addr, ulong, 0400);

u32 ap_max_insts = 65536, ap_max_ctxs = 16384, ap_max_threads = 4096;
module_param_named(max_insts, ap_max_insts, uint, 0400);
module_param_named(max_ctxs, ap_max_ctxs, uint, 0400);
module_param_named(max_threads, ap_max_threads, uint, 0400);

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

static int ap_check_addresses(void)
{
	unsigned long self = (unsigned long)ap_check_addresses;
	int err;

	err = ap_is_sym(text_poke_addr, "text_poke");
	err = err ?: ap_is_sym(text_mutex_addr, "text_mutex");
	err = err ?: ap_is_sym(build_id_addr, "vmlinux_build_id");
	err = err ?: ap_is_sym(search_extable_addr, "search_exception_tables");
	if (err)
		return err;
	if (!stext_addr || stext_addr >= etext_addr || etext_addr - stext_addr > SZ_1G ||
	    text_poke_addr < stext_addr || text_poke_addr >= etext_addr ||
	    search_extable_addr < stext_addr || search_extable_addr >= etext_addr ||
	    (self >= stext_addr && self < etext_addr) ||
	    !ap_in_core(stext_addr) || !ap_in_core(etext_addr - 1)) {
		pr_err("kernel text [%px, %px) is not the core kernel's\n",
		       (void *)stext_addr, (void *)etext_addr);
		return -EINVAL;
	}
	ap_k.text_poke = (void *)text_poke_addr;
	ap_k.text_mutex = (struct mutex *)text_mutex_addr;
	ap_k.search_extable = (void *)search_extable_addr;
	ap_k.stext = stext_addr;
	ap_k.etext = etext_addr;
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

static unsigned long ap_gs_current(void)
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

/* The dead-man switch: no heartbeat for s->deadman, everything goes. */
static void ap_deadman_fn(struct work_struct *w)
{
	struct ap_session *s;

	mutex_lock(&ap_lock);
	s = ap_cur;
	if (s && !s->dead && s->deadman) {
		ap_check_sites();
		if (time_after(jiffies, READ_ONCE(s->last_beat) + s->deadman)) {
			pr_warn("no heartbeat for %u ms: withdrawing every splice\n",
				jiffies_to_msecs(s->deadman));
			ap_withdraw_all(AP_DEADMAN);
			s->dead = true;
		} else {
			schedule_delayed_work(&ap_deadman_work,
					      min_t(unsigned long, s->deadman / 4, HZ / 4) + 1);
		}
	}
	mutex_unlock(&ap_lock);
}

static int ap_open(struct inode *inode, struct file *file)
{
	struct ap_session *s;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
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

static int ap_release(struct inode *inode, struct file *file)
{
	struct ap_session *s = file->private_data;

	cancel_delayed_work_sync(&ap_deadman_work);
	mutex_lock(&ap_lock);
	ap_withdraw_all(AP_WITHDRAWN);
	mutex_unlock(&ap_lock);
	/* Still ours (ap_cur) until no return comes back through the module. */
	ap_unhook_frames();
	mutex_lock(&ap_lock);
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
		.max_insts = ap_max_insts,
		.max_live = AP_POOL_SLOTS,
		.max_counters = AP_FAST_SLOTS,
		.site_insts = AP_SITE_INSTS,
		.max_ctxs = ap_max_ctxs,
		.max_threads = ap_max_threads,
		.max_depth = AP_MAX_DEPTH,
		.slot_size = AP_SLOT_SIZE,
		.smap = boot_cpu_has(X86_FEATURE_SMAP),
		.pool_start = (unsigned long)ap_pool,
		.pool_end = (unsigned long)ap_pool + AP_POOL_SLOTS * AP_SLOT_SIZE,
		.stub_enter = (unsigned long)ap_stub_enter,
		.stub_count = (unsigned long)ap_stub_count,
		.exit_tramp = (unsigned long)ap_exit_tramp,
		.gs_current = ap_gs_current(),
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
	ap_reclaim_flush();
	mutex_lock(&ap_lock);
	if (s->gen) {
		mutex_unlock(&ap_lock);
		return -EALREADY;
	}
	ap_measure_reset();
	memset(ap_insts, 0, array_size(ap_max_insts, sizeof(*ap_insts)));
	ap_reset_retired();
	s->gen = ap_gen;
	s->next_id = 1;
	s->deadman = msecs_to_jiffies(min_t(u32, h.deadman_ms ?: AP_DEADMAN_MAX_MS,
					    AP_DEADMAN_MAX_MS));
	ap_beat(s);
	schedule_delayed_work(&ap_deadman_work, s->deadman / 4 + 1);
	mutex_unlock(&ap_lock);
	return 0;
}

/* ap_ready says whether the session may splice now. */
static int ap_ready(struct ap_session *s)
{
	if (!s->gen)
		return -ENOTCONN;	/* no AP_IOC_HELLO yet */
	if (s->dead)
		return -ETIMEDOUT;	/* the dead-man switch fired */
	return 0;
}

static long ap_ioc_insert(struct ap_session *s, void __user *arg)
{
	struct ap_batch b;
	struct ap_splice *sp;
	long err;

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
	/* Slots withdrawn a moment ago come back after RCU-tasks. */
	mutex_lock(&ap_lock);
	if (ap_short(b.n)) {
		mutex_unlock(&ap_lock);
		ap_reclaim_flush();
		mutex_lock(&ap_lock);
	}
	err = ap_ready(s);
	if (!err) {
		err = ap_insert(sp, b.n);
		if (err >= 0) {
			b.done = err;
			err = 0;
		}
	}
	mutex_unlock(&ap_lock);
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
	mutex_lock(&ap_lock);
	if (!s->gen)
		err = -ENOTCONN;
	else
		b.done = ap_withdraw(addrs, b.n, AP_WITHDRAWN);
	mutex_unlock(&ap_lock);
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
	if (r.n >= ap_max_insts)
		return -EINVAL;
	out = kvcalloc(r.n + 1, sizeof(*out), GFP_KERNEL);
	if (!out)
		return -ENOMEM;
	mutex_lock(&ap_lock);
	for (i = 1; i <= r.n; i++) {
		out[i - 1].fast = ap_fast_sum(i);
		out[i - 1].state = ap_insts[i].state;
		out[i - 1].kind = ap_insts[i].kind;
	}
	memset(r.misses, 0, sizeof(r.misses));
	for_each_possible_cpu(cpu)
		for (i = 0; i < AP_M_N; i++)
			r.misses[i] += per_cpu(ap_misses[i], cpu);
	mutex_unlock(&ap_lock);
	if (r.n && copy_to_user(u64_to_user_ptr(r.ptr), out, r.n * sizeof(*out)))
		err = -EFAULT;
	else if (copy_to_user(arg, &r, sizeof(r)))
		err = -EFAULT;
	kvfree(out);
	return err;
}

static long ap_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ap_session *s = file->private_data;
	void __user *p = (void __user *)arg;

	if (cmd != AP_IOC_INFO && cmd != AP_IOC_HELLO && s->gen)
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
		return s->gen ? (READ_ONCE(s->dead) ? -ETIMEDOUT : 0) : -ENOTCONN;
	case AP_IOC_READ:
		return ap_ioc_read(s, p);
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
	cur = per_cpu_ptr((struct task_struct * __percpu *)ap_gs_current(), smp_processor_id());
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
	if (ap_max_insts < 2 || ap_max_insts > 65536 || ap_max_ctxs < 2 ||
	    ap_max_ctxs > (1 << 24) || ap_max_threads < 1 || ap_max_threads > (1 << 20))
		return -EINVAL;
	err = ap_parse_build_id();
	err = err ?: ap_check_addresses();
	err = err ?: ap_identity(release, ap_build_id, sizeof(ap_build_id));
	err = err ?: ap_check_percpu();
	if (err)
		return err;
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
	 * splices are withdrawn and its outstanding returns put back.
	 */
	proc_remove(ap_proc);
	cancel_delayed_work_sync(&ap_deadman_work);
	mutex_lock(&ap_lock);
	ap_withdraw_all(AP_WITHDRAWN);	/* nothing is live: release() ran */
	mutex_unlock(&ap_lock);
	ap_unhook_frames();
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
