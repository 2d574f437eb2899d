//go:build vm

package splice

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/internal/testenv"
)

// The ground-truth module, built for the guest's kernel by vmtest.json's
// prepare step, and its debugfs files.
const (
	aptestKo  = "../kmod/testdata/aptest.ko"
	aptestDir = "/sys/kernel/debug/aptest"
)

func loadAptest(t *testing.T) {
	t.Helper()
	testenv.LoadModule(t, aptestKo)
}

// unloadAptest removes the module, retrying for a second while
// something briefly holds it; it returns the last error.
func unloadAptest() error { return testenv.UnloadModule("aptest", 20, 50*time.Millisecond) }

func aptestLoaded() bool {
	_, err := os.Stat("/sys/module/aptest")
	return err == nil
}

// aptestOps runs n operations of the module's cpu shape (aptest_heavy
// spins 50 µs in each), from this process. The file is closed after: an
// open debugfs file holds the module.
func aptestOps(t *testing.T, n int) {
	t.Helper()
	if err := os.WriteFile(aptestDir+"/shape", []byte("cpu 50"), 0); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(aptestDir+"/run", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < n; i++ {
		if _, err := f.Write([]byte("1")); err != nil {
			t.Fatal(err)
		}
	}
}

// kprobesListed returns the lines of the kernel's kprobe list naming fn.
func kprobesListed(t *testing.T, fn string) []string {
	t.Helper()
	b, err := os.ReadFile("/sys/kernel/debug/kprobes/list")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, fn) {
			out = append(out, l)
		}
	}
	return out
}

// TestVMModuleUnload: instruments on a module's function, and the module
// removed under them and loaded again (SAFETY.md 18). No oops or WARN
// (the harness fails the run on either), every reading and Close works,
// and nothing stays behind:
//   - kprobe: the kernel disarms the probes of a module that goes
//     (kprobes_module_callback), so rmmod succeeds; the instrument keeps
//     the counts it had and counts nothing of the reloaded module. A new
//     session instruments the reloaded module exactly.
//   - fentry (where the module has BTF): the trampoline holds the module,
//     so rmmod is refused until the instrument is closed.
//   - splice: refuses module text, before writing anything.
func TestVMModuleUnload(t *testing.T) {
	const n = 20
	const fn = "aptest_heavy"
	me := pid(os.Getpid())
	t.Cleanup(func() {
		if err := unloadAptest(); err != nil {
			t.Errorf("aptest would not unload: %v", err)
		}
	})

	t.Run("kprobe", func(t *testing.T) {
		loadAptest(t)
		s := openSession(t, "kprobe")
		ins := insert(t, s, timer(fn, me))
		aptestOps(t, n)
		if c := byPath(read(t, s))[fn+":timer"]; c.Calls != n {
			t.Fatalf("before the unload: %d calls, want %d", c.Calls, n)
		}
		if err := unloadAptest(); err != nil {
			t.Fatalf("rmmod aptest under a kprobe timer: %v (the kernel disarms the probes of a module that goes)", err)
		}
		if l := kprobesListed(t, fn); len(l) > 0 && !strings.Contains(strings.Join(l, "\n"), "GONE") {
			t.Errorf("after the unload the kernel still lists live probes on %s: %q", fn, l)
		}
		loadAptest(t)
		aptestOps(t, n)
		if c := byPath(read(t, s))[fn+":timer"]; c.Calls != n {
			t.Errorf("after the unload and reload: %d calls, want the %d from before (the probe is gone)", c.Calls, n)
		}
		closeAll(ins)
		if err := s.Close(); err != nil {
			t.Fatalf("closing the session: %v", err)
		}
		if l := kprobesListed(t, fn); len(l) > 0 {
			t.Errorf("after Close the kernel still lists probes on %s: %q", fn, l)
		}

		s2 := openSession(t, "kprobe")
		insert(t, s2, timer(fn, me))
		aptestOps(t, n)
		if c := byPath(read(t, s2))[fn+":timer"]; c.Calls != n {
			t.Errorf("a new session on the reloaded module: %d calls, want %d", c.Calls, n)
		}
	})

	t.Run("fentry", func(t *testing.T) {
		loadAptest(t)
		if _, err := os.Stat("/sys/kernel/btf/aptest"); err != nil {
			// Kbuild gives it BTF where the headers ship vmlinux (6.12);
			// elsewhere (6.1) splice/vmtest.json's prepare step has pahole
			// give it BTF against the kernel's own vmlinux.
			t.Fatalf("aptest has no BTF, so fentry cannot attach to it: %v", err)
		}
		s := openSession(t, "fentry")
		ins := insert(t, s, timer(fn, me))
		aptestOps(t, n)
		err := kernel.DeleteModule("aptest")
		if !errors.Is(err, kernel.EBUSY) && !errors.Is(err, syscall.EAGAIN) {
			t.Fatalf("rmmod aptest under an fentry timer: %v, want it refused (the trampoline holds the module)", err)
		}
		aptestOps(t, n)
		if c := byPath(read(t, s))[fn+":timer"]; c.Calls != 2*n {
			t.Errorf("after the refused unload: %d calls, want %d", c.Calls, 2*n)
		}
		closeAll(ins)
		if err := s.Close(); err != nil {
			t.Fatalf("closing the session: %v", err)
		}
		if err := unloadAptest(); err != nil {
			t.Fatalf("rmmod aptest after the session closed: %v", err)
		}
		if aptestLoaded() {
			t.Fatal("aptest still loaded")
		}
	})

	t.Run("splice", func(t *testing.T) {
		loadAptest(t)
		s := openSplice(t, 0)
		_, err := s.Insert(context.Background(), timer(fn, me))
		if !errors.Is(err, instrument.ErrNotSupported) {
			t.Fatalf("splicing %s in a module: %v, want it refused as not supported", fn, err)
		}
		t.Logf("refused: %v", err)
		if len(s.mod().sites) != 0 {
			t.Fatalf("%d sites written after the refusal", len(s.mod().sites))
		}
	})
}
