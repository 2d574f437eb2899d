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
 *	apload [-w] find WIDTH DEPTH N  N walks, as find(1) does, of a tree of
 *	                              directories WIDTH wide and DEPTH deep with
 *	                              a small file in each (apload.t, made, then
 *	                              removed): getdents64(2) of every directory,
 *	                              newfstatat(2) of every entry
 *	apload [-w] tar WIDTH DEPTH N   N passes, as tar(1) into /dev/null does,
 *	                              over the same tree: every file opened,
 *	                              read (4 KiB each) and written to /dev/null
 *	apload [-w] tcp N             N round trips of 64 bytes over a loopback
 *	                              TCP connection to a forked child
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
	SYS_socket = 41, SYS_connect = 42, SYS_accept = 43, SYS_sendto = 44, SYS_recvfrom = 45,
	SYS_bind = 49, SYS_listen = 50, SYS_getsockname = 51, SYS_getdents64 = 217,
	SYS_openat = 257, SYS_newfstatat = 262,
};
enum { O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0100, O_TRUNC = 01000, O_DIRECTORY = 0200000 };
enum { AT_FDCWD = -100, AF_INET = 2, SOCK_STREAM = 1, DT_DIR = 4 };

static long sys4(long n, long a, long b, long c, long d)
{
	long r;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
	return r;
}

static long sys3(long n, long a, long b, long c) { return sys4(n, a, b, c, 0); }

/* sys4z is sys4 with the fifth and sixth arguments zero (sendto and
 * recvfrom with no address). */
static long sys4z(long n, long a, long b, long c, long d)
{
	long r;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = 0;
	register long r9 __asm__("r9") = 0;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
	return r;
}

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

/* The tree of find and tar: apload.t/0/1/.../f at every level. */
static char treepath[4096];
static char filebuf[4096];

static size_t append(size_t at, const char *c)
{
	for (size_t j = 0; c[j]; j++)
		treepath[at++] = c[j];
	treepath[at] = 0;
	return at;
}

static void maketree(size_t at, long width, long depth)
{
	long r = sys3(SYS_mkdir, (long)treepath, 0755, 0);
	if (r != 0 && r != -17)
		die("cannot make the tree apload.t in the current directory");
	size_t f = append(at, "/f");
	long fd = sys4(SYS_open, (long)treepath, O_WRONLY | O_CREAT | O_TRUNC, 0644, 0);
	if (fd < 0 || sys3(SYS_write, fd, (long)filebuf, sizeof(filebuf)) != sizeof(filebuf))
		die("cannot write a file of the tree");
	sys3(SYS_close, fd, 0, 0);
	(void)f;
	treepath[at] = 0;
	if (depth == 0)
		return;
	for (long i = 0; i < width; i++) {
		char name[4] = { '/', (char)('0' + i), 0, 0 };
		maketree(append(at, name), width, depth - 1);
		treepath[at] = 0;
	}
}

static void removetree(size_t at, long width, long depth)
{
	for (long i = 0; depth > 0 && i < width; i++) {
		char name[4] = { '/', (char)('0' + i), 0, 0 };
		removetree(append(at, name), width, depth - 1);
		treepath[at] = 0;
	}
	append(at, "/f");
	sys3(SYS_unlink, (long)treepath, 0, 0);
	treepath[at] = 0;
	sys3(SYS_rmdir, (long)treepath, 0, 0);
}

struct dirent64 { unsigned long ino; long off; unsigned short reclen; unsigned char type; char name[]; };

/* walk visits the directory at treepath: every entry stat'ed, files read
 * into /dev/null (out >= 0, tar), directories walked. */
static void walk(size_t at, long out)
{
	static char dents[4096];
	char st[256];
	long fd = sys4(SYS_openat, AT_FDCWD, (long)treepath, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		die("cannot open a directory of the tree");
	for (;;) {
		long n = sys3(SYS_getdents64, fd, (long)dents, sizeof(dents));
		if (n < 0)
			die("getdents64 failed");
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(dents + off);
			off += d->reclen;
			if (d->name[0] == '.' && (!d->name[1] || (d->name[1] == '.' && !d->name[2])))
				continue;
			char name[260] = { '/' };
			for (int j = 0; d->name[j] && j < 256; j++)
				name[j + 1] = d->name[j];
			size_t end = append(at, name);
			if (sys4(SYS_newfstatat, AT_FDCWD, (long)treepath, (long)st, 0) != 0)
				die("newfstatat failed");
			if (d->type == DT_DIR) {
				walk(end, out);
			} else if (out >= 0) {
				long f = sys4(SYS_open, (long)treepath, O_RDONLY, 0, 0);
				long got;
				if (f < 0)
					die("cannot open a file of the tree");
				while ((got = sys3(SYS_read, f, (long)filebuf, sizeof(filebuf))) > 0)
					sys3(SYS_write, out, (long)filebuf, got);
				sys3(SYS_close, f, 0, 0);
			}
			treepath[at] = 0;
		}
	}
	sys3(SYS_close, fd, 0, 0);
}

static void findloop(long width, long depth, long n, int tar)
{
	if (width < 1 || width > 9 || depth < 0 || depth > 8)
		die("find/tar: WIDTH must be 1 to 9, DEPTH 0 to 8");
	size_t at = append(0, "apload.t");
	maketree(at, width, depth);
	long out = -1;
	if (tar && (out = sys3(SYS_open, (long)"/dev/null", O_WRONLY, 0)) < 0)
		die("cannot open /dev/null");
	for (long i = 0; i < n; i++)
		walk(at, out);
	if (out >= 0)
		sys3(SYS_close, out, 0, 0);
	removetree(at, width, depth);
}

struct sockaddr_in { unsigned short family, port; unsigned int addr; char zero[8]; };

static void tcploop(long n)
{
	static char msg[64];
	struct sockaddr_in sa = { AF_INET, 0, 0x0100007f, {0} }; /* 127.0.0.1, any port */
	int salen = sizeof(sa);
	long ls = sys3(SYS_socket, AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || sys3(SYS_bind, ls, (long)&sa, sizeof(sa)) != 0 || sys3(SYS_listen, ls, 1, 0) != 0 ||
	    sys3(SYS_getsockname, ls, (long)&sa, (long)&salen) != 0)
		die("cannot listen on 127.0.0.1 (is lo up?)");
	long pid = sys3(SYS_fork, 0, 0, 0);
	if (pid < 0)
		die("fork failed");
	if (pid == 0) {
		long c = sys3(SYS_accept, ls, 0, 0);
		long got;
		while (c >= 0 && (got = sys4z(SYS_recvfrom, c, (long)msg, sizeof(msg), 0)) > 0)
			sys4z(SYS_sendto, c, (long)msg, got, 0);
		sys3(SYS_exit_group, 0, 0, 0);
	}
	sys3(SYS_close, ls, 0, 0);
	long s = sys3(SYS_socket, AF_INET, SOCK_STREAM, 0);
	if (s < 0 || sys3(SYS_connect, s, (long)&sa, sizeof(sa)) != 0)
		die("cannot connect to 127.0.0.1");
	for (long i = 0; i < n; i++) {
		long done = 0;
		if (sys4z(SYS_sendto, s, (long)msg, sizeof(msg), 0) != sizeof(msg))
			die("send failed");
		while (done < (long)sizeof(msg)) {
			long got = sys4z(SYS_recvfrom, s, (long)msg, sizeof(msg) - done, 0);
			if (got <= 0)
				die("receive failed");
			done += got;
		}
	}
	sys3(SYS_close, s, 0, 0);
	sys4(SYS_wait4, pid, 0, 0, 0);
}

static const char usage[] = "usage: apload [-w] [-1] pingpong N | stat DEPTH N | fsync N | read SIZE N"
			    " | find WIDTH DEPTH N | tar WIDTH DEPTH N | tcp N";

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
		die(usage);
	if (eq(argv[a], "pingpong") && argc == a + 2)
		pingpong(number(argv[a + 1]));
	else if (eq(argv[a], "stat") && argc == a + 3)
		statstorm(number(argv[a + 1]), number(argv[a + 2]));
	else if (eq(argv[a], "fsync") && argc == a + 2)
		fsyncloop(number(argv[a + 1]));
	else if (eq(argv[a], "read") && argc == a + 3)
		readloop(number(argv[a + 1]), number(argv[a + 2]));
	else if ((eq(argv[a], "find") || eq(argv[a], "tar")) && argc == a + 4)
		findloop(number(argv[a + 1]), number(argv[a + 2]), number(argv[a + 3]), eq(argv[a], "tar"));
	else if (eq(argv[a], "tcp") && argc == a + 2)
		tcploop(number(argv[a + 1]));
	else
		die(usage);
	sys3(SYS_exit_group, 0, 0, 0);
}

__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall start\n\thlt\n");
