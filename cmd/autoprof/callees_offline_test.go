//go:build !vm

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/testenv"
)

// Tests of the offline path on Debian's images: they fetch the kernels,
// which the test VMs (no network) cannot; the host runs them.

// TestCalleesOffline checks vfs_read's callees against objdump, as
// TestCalleesVfsReadLive does on the running kernel, on Debian's 6.1 and
// 6.12 images, whose vfs_read calls __fentry__ and goes through retpoline
// thunks as built (only 6.12 under the race detector).
func TestCalleesOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that fetches Debian kernels")
	}
	series := []string{"6.1", "6.12"}
	if raceDetector {
		series = series[1:]
	}
	for _, series := range series {
		t.Run(series, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			k := testenv.DebianKernel(t, ctx, series)
			_, im, syms := openImage(t, k.Vmlinuz)
			fn, err := syms.Func("vfs_read")
			if err != nil {
				t.Fatal(err)
			}
			code := make([]byte, fn.Size)
			if err := im.ReadAt(code, fn.Addr); err != nil {
				t.Fatal(err)
			}
			diffSites(t, commandSites(t, "--vmlinuz", k.Vmlinuz, "vfs_read"), objdumpSites(t, syms, fn, code))
		})
	}
}

// TestWrongSystemMap gives Debian's 6.12 vmlinuz a System.map whose
// functions sit 16 bytes away from where the image has them.
func TestWrongSystemMap(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that fetches Debian kernels")
	}
	k := testenv.DebianKernel(t, context.Background(), "6.12")
	_, _, syms := openImage(t, k.Vmlinuz)
	var b strings.Builder
	for _, s := range syms.Match(regexp.MustCompile("")) {
		addr := s.Addr
		if s.IsText() && s.Name != "_stext" {
			addr += 16
		}
		fmt.Fprintf(&b, "%016x %c %s\n", addr, s.Type, s.Name)
	}
	path := filepath.Join(t.TempDir(), "System.map")
	os.WriteFile(path, []byte(b.String()), 0o644)
	code, _, errOut := runCmd("callees", "--vmlinuz", k.Vmlinuz, "--system-map", path, "vfs_read")
	want := regexp.MustCompile(`^autoprof callees: checking \S+ against \S+: the symbol table does not belong to this kernel image: \d+ of \d+ functions are elsewhere \(\S+ is 0x[0-9a-f]+ there, 0x[0-9a-f]+ in the image\)\n$`)
	if code != 1 || !want.MatchString(errOut) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCmd("callees", "--vmlinuz", k.Vmlinuz, "--system-map", k.SystemMap, "vfs_read")
	if code != 1 || !strings.Contains(errOut, "the System.map is a placeholder") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("Debian's placeholder System.map: exit %d, stderr %q", code, errOut)
	}
}
