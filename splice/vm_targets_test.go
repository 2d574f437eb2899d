//go:build vm

package splice

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
)

// TestVMIndirectTargets: the indirect call sites of vfs_read and of its
// direct callees (new_sync_read where it is not inlined) report their
// actual targets; n preads of a file make one target, the file system's
// read_iter, called exactly n times.
func TestVMIndirectTargets(t *testing.T) {
	const n = 500
	s := openSession(t, "kprobe")
	file := tmpFile(t)
	h := startHelper(t, fmt.Sprintf("pread %d %s", n, file))
	fns := []string{"vfs_read"}
	for _, c := range mustFunction(t, s, "vfs_read").Calls() {
		fns = append(fns, c.Target)
	}
	var live int
	for _, fn := range fns {
		for _, site := range indirectSites(t, s.Graph(), fn) {
			spec := instrument.Spec{Point: instrument.Point{Func: fn, Offset: uint64(site.Off)}, Kind: instrument.Targets, Target: pid(h.Pid)}
			in, err := s.Insert(context.Background(), spec)
			if err != nil {
				t.Logf("%s (%s): %v", spec, site.Operand, err)
				continue
			}
			t.Logf("%s: call through %s", spec, site.Operand)
			defer in.Close()
			live++
		}
	}
	if live == 0 {
		t.Fatal("no indirect call site in vfs_read or its callees could be instrumented")
	}
	h.Go(t)
	r := read(t, s)
	best := instrument.TargetReading{}
	for _, tr := range r.Targets {
		if tr.Calls > best.Calls {
			best = tr
		}
	}
	want := readIterOf(t, file)
	if best.Calls != n || best.Func != want {
		t.Fatalf("busiest target %+v: want %s called %d times", best, want, n)
	}
	t.Logf("target of %s: %s, %d calls", best.Path, best.Func, best.Calls)
}

// readIterOf names the read_iter of the file system file is on, from its
// magic number (include/uapi/linux/magic.h; the functions are each file
// system's file_operations.read_iter since Linux 4.1).
func readIterOf(t *testing.T, file string) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(file, &st); err != nil {
		t.Fatal(err)
	}
	switch uint32(st.Type) {
	case 0x01021994: // TMPFS_MAGIC
		return "shmem_file_read_iter"
	case 0x858458f6: // RAMFS_MAGIC (the initramfs's rootfs without tmpfs)
		return "generic_file_read_iter"
	case 0xef53: // EXT4_SUPER_MAGIC
		return "ext4_file_read_iter"
	}
	t.Fatalf("%s: file system magic %#x: no read_iter known for it", file, st.Type)
	return ""
}

func mustFunction(t *testing.T, s *Session, fn string) *callgraph.Function {
	t.Helper()
	f, err := s.Graph().Function(fn)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
