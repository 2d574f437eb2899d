//go:build ignore

/*
 * apload: the bundled workloads of autoprof's demo and real-workload
 * tests, each with exactly known syscall counts:
 *
 *	apload [-w] [-1] pingpong N        N one-byte round trips over two pipes
 *	                              with a forked child: the parent makes N
 *	                              write(2) and N read(2) calls
 *	apload [-w] stat DEPTH N      N stat(2) calls of a directory DEPTH levels
 *	                              deep (apload.d/d/d/..., made, then removed,
 *	                              in the cwd)
 *	apload [-w] fsync N           N pwrite64(2) of 4 KiB then fsync(2) of a
 *	                              file in the cwd (removed at the end)
 *	apload [-w] read SIZE N       N pread64(2) of SIZE bytes (at most 64 KiB)
 *	                              of a 1 MiB file in the cwd, at successive
 *	                              offsets, wrapping (written first, in
 *	                              64 KiB pwrite64(2)s; removed at the end)
 *
 * With -w it first waits for one byte on its standard input, so that a
 * test can start counting before the first operation; with -1 it runs on
 * CPU 0 only (and so does the ping-pong's child). It prints nothing
 * unless an operation fails. Built freestanding and static (no libc), so
 * that it runs in the test VMs and makes no system call of its own
 * besides those above (and exit_group).
 */
typedef unsigned long size_t;

enum {
	SYS_read = 0, SYS_write = 1, SYS_open = 2, SYS_close = 3, SYS_stat = 4,
	SYS_pread64 = 17, SYS_pwrite64 = 18, SYS_fork = 57, SYS_wait4 = 61, SYS_fsync = 74,
	SYS_mkdir = 83, SYS_rmdir = 84, SYS_unlink = 87, SYS_exit_group = 231,
	SYS_sched_setaffinity = 203, SYS_pipe2 = 293,
};
enum { O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0100, O_TRUNC = 01000 };

static long sys4(long n, long a, long b, long c, long d)
{
	long r;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
	return r;
}

static long sys3(long n, long a, long b, long c) { return sys4(n, a, b, c, 0); }

static size_t len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static __attribute__((noreturn)) void die(const char *msg)
{
	sys3(SYS_write, 2, (long)"apload: ", 8);
	sys3(SYS_write, 2, (long)msg, len(msg));
	sys3(SYS_write, 2, (long)"\n", 1);
	sys3(SYS_exit_group, 1, 0, 0);
	__builtin_unreachable();
}

static long number(const char *s)
{
	long v = 0;
	if (!s || !*s)
		die("missing number");
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			die("not a number");
		v = v * 10 + (*s - '0');
	}
	return v;
}

static int eq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static void pingpong(long n)
{
	int p1[2], p2[2];
	char b = 'x';
	if (sys3(SYS_pipe2, (long)p1, 0, 0) < 0 || sys3(SYS_pipe2, (long)p2, 0, 0) < 0)
		die("pipe2 failed");
	long pid = sys3(SYS_fork, 0, 0, 0);
	if (pid < 0)
		die("fork failed");
	if (pid == 0) {
		sys3(SYS_close, p1[1], 0, 0);
		while (sys3(SYS_read, p1[0], (long)&b, 1) == 1)
			sys3(SYS_write, p2[1], (long)&b, 1);
		sys3(SYS_exit_group, 0, 0, 0);
	}
	sys3(SYS_close, p1[0], 0, 0);
	for (long i = 0; i < n; i++) {
		if (sys3(SYS_write, p1[1], (long)&b, 1) != 1 || sys3(SYS_read, p2[0], (long)&b, 1) != 1)
			die("ping-pong failed");
	}
	sys3(SYS_close, p1[1], 0, 0);
	sys4(SYS_wait4, pid, 0, 0, 0);
}

static void statstorm(long depth, long n)
{
	char path[4096];
	size_t at = 0;
	struct { char b[256]; } st;
	if (depth < 1 || depth * 2 + 8 > (long)sizeof(path) - 8)
		die("depth out of range");
	for (long i = 0; i < depth; i++) {
		const char *c = i == 0 ? "apload.d" : "/d";
		for (size_t j = 0; c[j]; j++)
			path[at++] = c[j];
		path[at] = 0;
		long r = sys3(SYS_mkdir, (long)path, 0755, 0);
		if (r != 0 && r != -17) /* EEXIST */
			die("cannot make the directory tree in the current directory");
	}
	for (long i = 0; i < n; i++)
		if (sys3(SYS_stat, (long)path, (long)&st, 0) != 0)
			die("stat failed");
	for (long i = depth; i > 0; i--) {
		sys3(SYS_rmdir, (long)path, 0, 0);
		while (at > 0 && path[at] != '/')
			at--;
		path[at] = 0;
	}
}

static void fsyncloop(long n)
{
	static char block[4096];
	const char *name = "apload-fsync.tmp";
	long fd = sys3(SYS_open, (long)name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("cannot create apload-fsync.tmp in the current directory");
	for (long i = 0; i < n; i++) {
		block[0] = (char)i;
		if (sys4(SYS_pwrite64, fd, (long)block, sizeof(block), 0) != sizeof(block) || sys3(SYS_fsync, fd, 0, 0) != 0)
			die("pwrite or fsync failed");
	}
	sys3(SYS_close, fd, 0, 0);
	sys3(SYS_unlink, (long)name, 0, 0);
}

static char readbuf[65536];

static void readloop(long size, long n)
{
	static const char name[] = "apload.data";
	enum { FILE_SIZE = 1 << 20 };
	if (size <= 0 || size > (long)sizeof(readbuf) || FILE_SIZE % size != 0)
		die("read: SIZE must divide 1 MiB and be at most 64 KiB");
	long fd = sys4(SYS_open, (long)name, O_RDWR | O_CREAT | O_TRUNC, 0600, 0);
	if (fd < 0)
		die("cannot create apload.data");
	for (long off = 0; off < FILE_SIZE; off += sizeof(readbuf))
		if (sys4(SYS_pwrite64, fd, (long)readbuf, sizeof(readbuf), off) != sizeof(readbuf))
			die("pwrite failed");
	for (long i = 0, off = 0; i < n; i++) {
		if (sys4(SYS_pread64, fd, (long)readbuf, size, off) != size)
			die("pread failed");
		off += size;
		if (off == FILE_SIZE)
			off = 0;
	}
	sys3(SYS_close, fd, 0, 0);
	sys3(SYS_unlink, (long)name, 0, 0);
}

__attribute__((used)) void start(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	int a = 1, wait = 0;
	for (; a < argc && argv[a][0] == '-'; a++) {
		if (eq(argv[a], "-w"))
			wait = 1;
		else if (eq(argv[a], "-1")) {
			unsigned long mask = 1;
			if (sys3(SYS_sched_setaffinity, 0, sizeof(mask), (long)&mask) != 0)
				die("sched_setaffinity failed");
		} else
			die("unknown flag");
	}
	if (wait) {
		char c;
		sys3(SYS_read, 0, (long)&c, 1);
	}
	if (a >= argc)
		die("usage: apload [-w] [-1] pingpong N | stat DEPTH N | fsync N | read SIZE N");
	if (eq(argv[a], "pingpong") && argc == a + 2)
		pingpong(number(argv[a + 1]));
	else if (eq(argv[a], "stat") && argc == a + 3)
		statstorm(number(argv[a + 1]), number(argv[a + 2]));
	else if (eq(argv[a], "fsync") && argc == a + 2)
		fsyncloop(number(argv[a + 1]));
	else if (eq(argv[a], "read") && argc == a + 3)
		readloop(number(argv[a + 1]), number(argv[a + 2]));
	else
		die("usage: apload [-w] [-1] pingpong N | stat DEPTH N | fsync N | read SIZE N");
	sys3(SYS_exit_group, 0, 0, 0);
}

__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall start\n\thlt\n");
