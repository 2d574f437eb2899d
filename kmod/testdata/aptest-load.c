/*
 * aptest-load drives the aptest module from one thread, so that the
 * target's time is that thread's wall time:
 *
 *	aptest-load SECONDS [SHAPE [US [N]]]
 *	aptest-load SECONDS -f FILE
 *
 * sets the shape (if given), then writes to /sys/kernel/debug/aptest/run
 * (or to FILE: a generated tree's entry, see internal/calltree) in a loop
 * for SECONDS seconds and prints "ops COUNT elapsed_ns NS".
 * Built freestanding and static (no libc): raw x86-64 system calls only.
 */
typedef unsigned long size_t;

enum { SYS_write = 1, SYS_open = 2, SYS_close = 3, SYS_clock_gettime = 228, SYS_exit_group = 231 };
enum { O_WRONLY = 1, CLOCK_MONOTONIC = 1 };

static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}

static size_t len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static void put(int fd, const char *s) { sys3(SYS_write, fd, (long)s, len(s)); }

static __attribute__((noreturn)) void die(const char *msg)
{
	put(2, "aptest-load: ");
	put(2, msg);
	put(2, "\n");
	sys3(SYS_exit_group, 1, 0, 0);
	__builtin_unreachable();
}

static long number(const char *s)
{
	long v = 0;
	if (!*s)
		die("not a number");
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			die("not a number");
		v = v * 10 + (*s - '0');
	}
	return v;
}

static char *utoa(unsigned long v, char *end)
{
	*--end = 0;
	do {
		*--end = '0' + v % 10;
		v /= 10;
	} while (v);
	return end;
}

struct timespec { long sec, nsec; };

static long now(void)
{
	struct timespec ts;
	sys3(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts, 0);
	return ts.sec * 1000000000L + ts.nsec;
}

static const char dir[] = "/sys/kernel/debug/aptest/";

static int open_path(const char *path)
{
	long fd = sys3(SYS_open, (long)path, O_WRONLY, 0);
	if (fd < 0)
		die("cannot open the file to write to: is the module loaded?");
	return (int)fd;
}

static int open_file(const char *name)
{
	char path[128];
	size_t i = 0, j = 0;
	while (dir[j])
		path[i++] = dir[j++];
	for (j = 0; name[j]; j++)
		path[i++] = name[j];
	path[i] = 0;
	long fd = sys3(SYS_open, (long)path, O_WRONLY, 0);
	if (fd < 0)
		die("cannot open aptest's debugfs files: is the module loaded and debugfs mounted?");
	return (int)fd;
}

static void set_shape(int argc, char **argv)
{
	char buf[64];
	size_t n = 0;
	for (int i = 2; i < argc && i < 5; i++) {
		for (const char *s = argv[i]; *s && n < sizeof(buf) - 2; s++)
			buf[n++] = *s;
		buf[n++] = ' ';
	}
	int fd = open_file("shape");
	if (sys3(SYS_write, fd, (long)buf, n) != (long)n)
		die("the module refused the shape");
	sys3(SYS_close, fd, 0, 0);
}

__attribute__((used)) void start(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	if (argc < 2)
		die("usage: aptest-load SECONDS [SHAPE [US [N]]] | SECONDS -f FILE");
	long seconds = number(argv[1]);
	int fd;
	if (argc == 4 && argv[2][0] == '-' && argv[2][1] == 'f' && !argv[2][2]) {
		fd = open_path(argv[3]);
	} else {
		if (argc > 2)
			set_shape(argc, argv);
		fd = open_file("run");
	}
	long t0 = now(), end = t0 + seconds * 1000000000L;
	unsigned long ops = 0;
	do {
		if (sys3(SYS_write, fd, (long)"1", 1) != 1)
			die("writing the run file failed");
		ops++;
	} while (now() < end);
	char a[24], b[24];
	put(1, "ops ");
	put(1, utoa(ops, a + sizeof(a)));
	put(1, " elapsed_ns ");
	put(1, utoa(now() - t0, b + sizeof(b)));
	put(1, "\n");
	sys3(SYS_exit_group, 0, 0, 0);
}

__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall start\n\thlt\n");
