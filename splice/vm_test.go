//go:build vm

package splice

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
)

var functionBackends = []instrument.Backend{instrument.Fentry, instrument.Kprobe}

// TestVMExactCount: a helper does exactly n preads; timers filtered to it
// count exactly n in each calling context, on both function backends.
func TestVMExactCount(t *testing.T) {
	const n = 1000
	file := tmpFile(t)
	for _, b := range functionBackends {
		t.Run(string(b), func(t *testing.T) {
			s := openSession(t, b)
			below := directCallee(t, s, "vfs_read", "rw_verify_area", "security_file_permission", "fsnotify_access")
			h := startHelper(t, fmt.Sprintf("pread %d %s", n, file))
			tg := pid(h.Pid)
			insert(t, s, timer("__x64_sys_pread64", tg), timer("vfs_read", tg), timer(below, tg))
			h.Go(t)
			r, err := s.Read()
			if err != nil {
				t.Fatal(err)
			}
			logReading(t, r)
			got := byPath(r)
			want := []string{"__x64_sys_pread64", "__x64_sys_pread64;vfs_read", "__x64_sys_pread64;vfs_read;" + below}
			for _, p := range want {
				if c := got[p+":timer"]; c.Calls != n {
					t.Errorf("%s: %d calls, want %d", p, c.Calls, n)
				}
			}
			for k, c := range got {
				if c.Calls > 0 && !contains(want, k[:len(k)-len(":timer")]) && c.Path[len(c.Path)-1].Func == "vfs_read" {
					t.Errorf("vfs_read counted in an unexpected context %s: %d", k, c.Calls)
				}
			}
			outer, inner := got["__x64_sys_pread64:timer"], got["__x64_sys_pread64;vfs_read:timer"]
			if inner.InclNs > outer.InclNs || outer.ExclNs+inner.InclNs > outer.InclNs+outer.InclNs/100 {
				t.Errorf("exclusive time of the root (%d) + inclusive of vfs_read (%d) exceeds the root's inclusive %d", outer.ExclNs, inner.InclNs, outer.InclNs)
			}
		})
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// bpf returns the BPF engine behind a session of a BPF backend.
func (s *Session) bpf() *bpfSession { return s.eng.(*bpfSession) }

// TestVMTraceableCached: the first read of available_filter_functions
// in a boot keeps a copy under the cache directory, and the next read
// returns that copy, the same bytes as the kernel's file.
func TestVMTraceableCached(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	if _, err := kernel.Tracefs.Ensure(); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(kernel.Tracefs.Path + "/available_filter_functions")
	if err != nil {
		t.Fatal(err)
	}
	first, err := readTraceable()
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(cache, "autoprof", traceableCacheName)
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("no copy kept: %v", err)
	}
	second, err := readTraceable()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, want) || !bytes.Equal(second, want) {
		t.Fatalf("read %d bytes, then %d from the copy; the kernel's file has %d", len(first), len(second), len(want))
	}
	if err := os.WriteFile(kept, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if third, err := readTraceable(); err != nil || !bytes.Equal(third, want) {
		t.Fatalf("with the copy damaged: %d bytes, %v", len(third), err)
	}
}
