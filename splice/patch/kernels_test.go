package patch

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/debkernel"
	"github.com/autoprof/autoprof/internal/testenv"
)

// debianKernel is Debian's kernel of a series as built, with the tables
// the splicer reads (from the image, where the running kernel's come from
// its memory) and its alternatives.
type debianKernel struct {
	once   sync.Once
	g      *callgraph.Graph
	tables *Tables
	fetch  error // the kernel could not be fetched
	err    error
}

var debianKernels = map[string]*debianKernel{"6.1": {}, "6.12": {}}

func debian(t *testing.T, series string) (*callgraph.Graph, *Tables) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that fetches and decodes a Debian kernel")
	}
	d := debianKernels[series]
	d.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		k, err := debkernel.Fetch(ctx, series)
		if err != nil {
			d.fetch = err
			return
		}
		if d.g, d.err = callgraph.OpenOffline(k.Vmlinuz, ""); d.err != nil {
			return
		}
		if d.tables, d.err = ReadTables(d.g.Symbols(), d.g.Text()); d.err != nil {
			return
		}
		im, err := callgraph.OpenImage(k.Vmlinuz)
		if err != nil {
			d.err = err
			return
		}
		d.err = d.tables.AddImage(im, d.g.Symbols())
	})
	if d.fetch != nil {
		testenv.NoKernel(t, series, d.fetch)
	}
	if d.err != nil {
		t.Fatal(d.err)
	}
	return d.g, d.tables
}

// sweepFunctions are functions of every kind the splicer meets: short and
// long, leaf and not, with loops, with exception-table entries, with jump
// labels, syscalls, locks.
var sweepFunctions = []string{
	"vfs_read", "vfs_write", "ksys_read", "ksys_write", "rw_verify_area", "security_file_permission",
	"__x64_sys_getpid", "__x64_sys_read", "__x64_sys_write", "__x64_sys_pread64", "__task_pid_nr_ns",
	"do_sys_openat2", "do_filp_open", "path_openat", "link_path_walk", "lookup_fast", "dput",
	"kmem_cache_alloc", "kmem_cache_free", "kfree", "__kmalloc", "memcg_slab_post_alloc_hook",
	"schedule", "try_to_wake_up", "enqueue_task_fair", "dequeue_task_fair", "update_curr",
	"copy_page_to_iter", "copy_page_from_iter", "filemap_read", "filemap_get_pages",
	"mutex_lock", "mutex_unlock", "down_read", "up_read", "__wake_up", "add_wait_queue",
	"hrtimer_start_range_ns", "ktime_get", "tick_sched_timer", "run_timer_softirq",
	"tcp_sendmsg", "tcp_recvmsg", "ip_rcv", "__netif_receive_skb_core", "skb_release_data",
	"handle_mm_fault", "do_anonymous_page", "__alloc_pages", "free_unref_page", "get_page_from_freelist",
	"__fdget", "fput", "__fput", "alloc_file_pseudo", "pipe_read", "pipe_write",
	"strncpy_from_user", "copy_from_kernel_nofault", "seq_read_iter",
}

// linearBoundaries returns the instruction starts of a linear decode from
// the symbol's start, the way SAFETY A.2 states it, independently of
// callgraph's sweep.
func linearBoundaries(code []byte) map[uint32]bool {
	out := map[uint32]bool{}
	for off := 0; off < len(code); {
		out[uint32(off)] = true
		if n := extraLen(code[off:]); n > 0 {
			off += n
			continue
		}
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil || in.Len == 0 {
			delete(out, uint32(off))
			break
		}
		off += in.Len
	}
	return out
}

// extraLen returns the length of the encodings x86asm lacks that kernel
// text holds (as the kernel's own decoder knows them): ENDBR64, CLAC,
// STAC.
func extraLen(b []byte) int {
	switch {
	case len(b) >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa:
		return 4
	case len(b) >= 3 && b[0] == 0x0f && b[1] == 0x01 && (b[2] == 0xca || b[2] == 0xcb):
		return 3
	}
	return 0
}

// TestOffsetSweep (SAFETY A.2): for every offset 0..255 of more than 50
// functions of both Debian kernels, an accepted offset is an instruction
// boundary of a linear decode from the symbol's start, and its window
// keeps the rules; every other offset is refused.
func TestOffsetSweep(t *testing.T) {
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			g, tables := debian(t, series)
			funcs, accepted, refused := 0, 0, 0
			for _, name := range sweepFunctions {
				fn, err := g.Function(name)
				if err != nil {
					continue
				}
				funcs++
				bounds := linearBoundaries(fn.Code)
				for off := uint32(0); off < 256 && off < uint32(len(fn.Code)); off++ {
					w, err := SelectWindow(fn, nil, off, false, tables)
					if err != nil {
						refused++
						continue
					}
					accepted++
					if !bounds[off] {
						t.Errorf("%s+%#x accepted, but a linear decode has no instruction there", name, off)
					}
					checkWindow(t, fn, w)
				}
			}
			t.Logf("%d functions, %d offsets accepted, %d refused", funcs, accepted, refused)
			if funcs < 50 {
				t.Errorf("only %d of the sweep's functions are in this kernel, want at least 50", funcs)
			}
		})
	}
}

// TestEntryWindows counts the functions with an entry window, and checks
// each against the rules: every third function, to keep the race
// detector's run short.
func TestEntryWindows(t *testing.T) {
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			g, tables := debian(t, series)
			n, ok := 0, 0
			for i, sym := range g.Symbols().Functions() {
				if sym.Module != "" || i%3 != 0 {
					continue
				}
				fn, err := g.FunctionOf(sym)
				if err != nil || fn.Fentry < 0 {
					continue
				}
				n++
				w, err := SelectWindow(fn, nil, 0, true, tables)
				if err != nil {
					continue
				}
				ok++
				checkWindow(t, fn, w)
			}
			t.Logf("%d of %d traceable functions have an entry window (%.0f%%)", ok, n, 100*float64(ok)/float64(max(n, 1)))
			if ok < n/2 {
				t.Errorf("only %d of %d functions have an entry window", ok, n)
			}
		})
	}
}
