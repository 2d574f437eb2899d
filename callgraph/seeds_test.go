//go:build !vm

package callgraph

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzDecode from Debian's 6.1 kernel")

// seedFunctions are the functions of Debian's 6.1 kernel whose bytes seed
// FuzzDecode: common shapes (calls, retpoline thunks, return thunks, cold
// parts, the ftrace call), AVX code, the BPF interpreter's jump table,
// 32-bit code in text and the overlapping untraining sequences.
var seedFunctions = []string{
	"vfs_read", "ksys_read", "__fsnotify_parent", "rw_verify_area", "schedule",
	"do_syscall_64", "blake2s_compress_avx512", "pvh_start_xen", "srso_untrain_ret",
	"__x86_indirect_thunk_rax", "__x86_return_thunk", "entry_SYSCALL_64",
	"___bpf_prog_run", "memcpy", "copy_user_generic_unrolled", "native_write_cr4",
	"kfree", "__kmalloc", "do_sys_openat2", "_raw_spin_lock",
}

// TestFuzzSeeds checks that FuzzDecode's seed corpus has a well-formed
// seed for each of seedFunctions, and with -update-seeds rewrites it from
// Debian's 6.1 kernel of the day (go test -run TestFuzzSeeds
// -update-seeds); see testdata/README.md. The check does not compare the
// bytes with today's kernel: Debian's point releases change them.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if !*updateSeeds {
		for _, name := range seedFunctions {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Errorf("no seed for %s: %v (rewrite the corpus with -update-seeds)", name, err)
				continue
			}
			head, lit, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
			if !ok || head != "go test fuzz v1" || !strings.HasPrefix(lit, "[]byte(") {
				t.Errorf("the seed of %s is not one []byte in go test fuzz v1", name)
				continue
			}
			code, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lit, "[]byte("), ")"))
			if err != nil || len(code) == 0 {
				t.Errorf("the seed of %s: %v, %d bytes", name, err, len(code))
			}
		}
		return
	}
	_, im, syms := debian(t, "6.1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range seedFunctions {
		fn, err := syms.Func(name)
		if err != nil {
			t.Logf("skipping %s: %v", name, err)
			continue
		}
		code := make([]byte, min(fn.Size, 4096))
		if err := im.ReadAt(code, fn.Addr); err != nil {
			t.Fatal(err)
		}
		seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", code)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
