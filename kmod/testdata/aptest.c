// SPDX-License-Identifier: GPL-2.0
/*
 * aptest: the ground truth for autoprof's hunts. Each write(2) to
 * debugfs aptest/run runs one operation: a synthetic call tree whose shape
 * and costs are chosen by writing to aptest/shape:
 *
 *	cpu [US]       a CPU-bound leaf (aptest_heavy, US microseconds)
 *	sleep [US]     a sleeping leaf (aptest_sleeper, usleep_range of US)
 *	indirect [US]  a CPU-bound leaf called through a function pointer
 *	deep [US]      a CPU-bound leaf at the end of an 8-function chain
 *	many [US] [N]  a cheap function called N times per operation
 *
 * Every shape also runs cheaper distractors (a light spin, bookkeeping with
 * kmalloc/kfree). aptest/stats reports, per planted part, the calls and the
 * nanoseconds measured around each call by its caller, so that tests can
 * compare a hunt's findings with what really happened. Every function is
 * noinline and noclone, and every call is followed by a write, so that the
 * call tree in the binary is the call tree in this file.
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/delay.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <asm/msr.h>
#include <asm/tsc.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("autoprof ground-truth call trees");

#define PLANT noinline __noclone __used

enum { ST_OP, ST_HEAVY, ST_SLEEPER, ST_INDIRECT, ST_DEEP, ST_MANY, ST_LIGHT, ST_N };
static const char *const st_names[ST_N] = {
	"op", "aptest_heavy", "aptest_sleeper", "aptest_ind_heavy",
	"aptest_deep_leaf", "aptest_tiny", "aptest_light",
};

static struct {
	atomic64_t calls, ns;
} stats[ST_N];

static DEFINE_MUTEX(shape_lock);
static char shape[16] = "cpu";
static unsigned int cost_us = 2000;	/* the planted part's cost */
static unsigned int many_n = 200;	/* calls per operation of the cheap function */
static volatile unsigned long sink;	/* written after calls: no tail calls */

#define TIMED(i, call) do {						\
	u64 t0 = ktime_get_ns();					\
	call;								\
	atomic64_add(ktime_get_ns() - t0, &stats[i].ns);		\
	atomic64_inc(&stats[i].calls);					\
} while (0)

/* spin busy-waits ns nanoseconds on the TSC, calling nothing. */
static __always_inline void spin(u64 ns)
{
	u64 start = rdtsc(), cycles = ns * tsc_khz / 1000000;

	while (rdtsc() - start < cycles)
		cpu_relax();
}

PLANT void aptest_light(void) { spin(cost_us * 50ULL); sink++; }		/* 5% of the heavy part */
PLANT void aptest_heavy(void) { spin(cost_us * 1000ULL); sink++; }
PLANT void aptest_sleeper(void) { usleep_range(cost_us, cost_us + cost_us / 20 + 1); sink++; }
PLANT void aptest_ind_heavy(unsigned int us) { spin(us * 1000ULL); sink++; }
PLANT void aptest_ind_cheap(unsigned int us) { spin(us * 10ULL); sink++; }
PLANT void aptest_deep_leaf(void) { spin(cost_us * 1000ULL); sink++; }
PLANT void aptest_tiny(void) { spin(cost_us * 1000ULL / many_n); sink++; }

/* aptest_target is the indirect call's target, chosen at run time. */
static void (*aptest_target)(unsigned int us) = aptest_ind_cheap;

PLANT void aptest_bookkeeping(void)
{
	void *p = kmalloc(256, GFP_KERNEL);

	if (p)
		memset(p, 0, 256);
	kfree(p);
	sink++;
}

PLANT void aptest_cpu(void) { TIMED(ST_HEAVY, aptest_heavy()); sink++; }
PLANT void aptest_sleep(void) { TIMED(ST_SLEEPER, aptest_sleeper()); sink++; }
PLANT void aptest_indirect(void) { TIMED(ST_INDIRECT, aptest_target(cost_us)); sink++; }

PLANT void aptest_chain8(void) { TIMED(ST_DEEP, aptest_deep_leaf()); sink++; }
PLANT void aptest_chain7(void) { aptest_chain8(); sink++; }
PLANT void aptest_chain6(void) { aptest_chain7(); sink++; }
PLANT void aptest_chain5(void) { aptest_chain6(); sink++; }
PLANT void aptest_chain4(void) { aptest_chain5(); sink++; }
PLANT void aptest_chain3(void) { aptest_chain4(); sink++; }
PLANT void aptest_chain2(void) { aptest_chain3(); sink++; }
PLANT void aptest_chain1(void) { aptest_chain2(); sink++; }

PLANT void aptest_many(void)
{
	unsigned int i;
	u64 t0 = ktime_get_ns();

	for (i = 0; i < many_n; i++)
		aptest_tiny();
	atomic64_add(ktime_get_ns() - t0, &stats[ST_MANY].ns);
	atomic64_add(many_n, &stats[ST_MANY].calls);
	sink++;
}

/* aptest_op runs one operation of the current shape. */
PLANT void aptest_op(void)
{
	TIMED(ST_LIGHT, aptest_light());
	aptest_bookkeeping();
	switch (shape[0]) {
	case 'c': aptest_cpu(); break;
	case 's': aptest_sleep(); break;
	case 'i': aptest_indirect(); break;
	case 'd': aptest_chain1(); break;
	case 'm': aptest_many(); break;
	}
	sink++;
}

static ssize_t aptest_run_write(struct file *f, const char __user *buf, size_t n, loff_t *pos)
{
	mutex_lock(&shape_lock);
	TIMED(ST_OP, aptest_op());
	mutex_unlock(&shape_lock);
	return n;
}

static ssize_t shape_write(struct file *f, const char __user *ubuf, size_t n, loff_t *pos)
{
	char buf[64], name[16];
	unsigned int us = 2000, count = 200;
	int got;

	if (n >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, n))
		return -EFAULT;
	buf[n] = 0;
	got = sscanf(buf, "%15s %u %u", name, &us, &count);
	if (got < 1 || !strchr("csidm", name[0]) || us == 0 || us > 1000000 || count == 0 || count > 100000)
		return -EINVAL;
	mutex_lock(&shape_lock);
	strscpy(shape, name, sizeof(shape));
	cost_us = us;
	many_n = count;
	aptest_target = name[0] == 'i' ? aptest_ind_heavy : aptest_ind_cheap;
	mutex_unlock(&shape_lock);
	return n;
}

static ssize_t shape_read(struct file *f, char __user *ubuf, size_t n, loff_t *pos)
{
	char buf[64];
	int len;

	mutex_lock(&shape_lock);
	len = scnprintf(buf, sizeof(buf), "%s %u %u\n", shape, cost_us, many_n);
	mutex_unlock(&shape_lock);
	return simple_read_from_buffer(ubuf, n, pos, buf, len);
}

static ssize_t stats_read(struct file *f, char __user *ubuf, size_t n, loff_t *pos)
{
	char buf[512];
	int i, len = 0;

	for (i = 0; i < ST_N; i++)
		len += scnprintf(buf + len, sizeof(buf) - len, "%s %lld %lld\n", st_names[i],
				 atomic64_read(&stats[i].calls), atomic64_read(&stats[i].ns));
	return simple_read_from_buffer(ubuf, n, pos, buf, len);
}

static ssize_t reset_write(struct file *f, const char __user *ubuf, size_t n, loff_t *pos)
{
	int i;

	for (i = 0; i < ST_N; i++) {
		atomic64_set(&stats[i].calls, 0);
		atomic64_set(&stats[i].ns, 0);
	}
	return n;
}

static const struct file_operations run_fops = { .owner = THIS_MODULE, .write = aptest_run_write };
static const struct file_operations shape_fops = { .owner = THIS_MODULE, .write = shape_write, .read = shape_read };
static const struct file_operations stats_fops = { .owner = THIS_MODULE, .read = stats_read };
static const struct file_operations reset_fops = { .owner = THIS_MODULE, .write = reset_write };

static struct dentry *dir;

static int __init aptest_init(void)
{
	dir = debugfs_create_dir("aptest", NULL);
	if (IS_ERR(dir))
		return PTR_ERR(dir);
	/* _unsafe: no debugfs proxy, so that vfs_write calls aptest_run_write directly. */
	debugfs_create_file_unsafe("run", 0200, dir, NULL, &run_fops);
	debugfs_create_file_unsafe("shape", 0600, dir, NULL, &shape_fops);
	debugfs_create_file_unsafe("stats", 0400, dir, NULL, &stats_fops);
	debugfs_create_file_unsafe("reset", 0200, dir, NULL, &reset_fops);
	return 0;
}

static void __exit aptest_exit(void)
{
	debugfs_remove(dir);
}

module_init(aptest_init);
module_exit(aptest_exit);
