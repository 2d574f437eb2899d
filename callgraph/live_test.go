package callgraph

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/kmod/textread"
)

// liveGraph opens the running kernel's graph, or skips where this machine
// does not let the test read kernel text (never in the test VM, and not
// where the verifier rejects the BPF reader).
func liveGraph(t *testing.T) *Graph {
	t.Helper()
	g, err := openLive()
	if err != nil {
		featuretest.Require(t, err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// openLive opens the running kernel's graph as livetext.OpenGraph does:
// text from /proc/kcore, else from the BPF reader. (A test of this
// package cannot import livetext, which imports it.)
func openLive() (*Graph, error) {
	syms, err := LiveSymbols()
	if err != nil {
		return nil, err
	}
	k, kerr := OpenKcore(KcorePath)
	if kerr == nil {
		return NewGraph(syms, k, true), nil
	}
	b, berr := textread.Open()
	if berr != nil {
		return nil, fmt.Errorf("no reader of live kernel text: %w; BPF reader: %w", kerr, berr)
	}
	return NewGraph(syms, b, true), nil
}

// TestObjdumpAgreesLive reads the running kernel's core text through the
// graph's reader (the BPF reader on the development hosts, /proc/kcore
// where there is one) and compares every function's instruction
// boundaries with objdump's over the same bytes (every 20th function
// under the race detector; with -short, the first 2 MiB of text, as the
// VM tests in CI run it: objdump is in the guest, vmtest.json).
func TestObjdumpAgreesLive(t *testing.T) {
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Fatalf("objdump (binutils, a dependency of the tests: scripts/deps.sh) is missing: %v", err)
	}
	g := liveGraph(t)
	syms := g.Symbols()
	start, end, ok := syms.CoreText()
	if !ok {
		t.Fatal("no core text range in /proc/kallsyms")
	}
	if testing.Short() {
		end = min(end, start+2<<20)
	}
	code := make([]byte, end-start)
	t0 := time.Now()
	if err := g.Text().ReadAt(code, start); err != nil {
		t.Fatal(err)
	}
	t.Logf("read %d bytes of live text through %v in %v", len(code), g.Text(), time.Since(t0))
	var funcs []Symbol
	for _, i := range syms.text {
		if s := syms.all[i]; s.Module == "" && s.Addr >= start && s.End() <= end {
			funcs = append(funcs, s)
		}
	}
	addrs, texts := runObjdump(t, []region{{addr: start, code: code, funcs: funcs}}, keepObjdumpText)
	var r diffReport
	for i, fn := range syms.Functions() {
		if fn.Module != "" || fn.Addr < start || fn.End() > end || raceEnabled && i%20 != 0 {
			continue
		}
		body := code[fn.Addr-start : fn.End()-start]
		after := code[fn.End()-start : min(fn.End()-start+15, uint64(len(code)))]
		f, err := Decode(fn, body, syms)
		if err != nil {
			t.Fatal(err)
		}
		r.functions++
		if d := compareWithObjdump(f, objdumpOffsets(addrs, fn.Addr, fn.End()), texts, after); d != nil {
			r.add(d)
		}
	}
	if r.functions < 500 {
		t.Fatalf("only %d functions compared", r.functions)
	}
	r.check(t, 0.999)
}

// TestLiveEntry checks what live text shows at a traceable function's
// entry: ftrace's 5-byte nop (or a tracer's call), after ENDBR64 on IBT
// kernels; never the call to __fentry__ the image holds.
func TestLiveEntry(t *testing.T) {
	g := liveGraph(t)
	f, err := g.Function("vfs_read")
	if err != nil {
		t.Fatal(err)
	}
	if f.Fentry < 0 {
		t.Fatalf("vfs_read has no ftrace site: % x", f.Code[:min(16, len(f.Code))])
	}
	in, _ := f.Inst(uint32(f.Fentry))
	if in.Kind == KindCall {
		for _, s := range f.Sites {
			if s.Off == in.Off {
				t.Errorf("the ftrace site is listed as a call site: %+v", s)
			}
		}
	}
	if len(f.Problems) > 0 {
		t.Errorf("vfs_read: %v", f.Err())
	}
}

func TestKcoreErrors(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "kcore")
	if err := os.WriteFile(notELF, []byte("not a core file at all, just text"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct{ path, want string }{
		{missing, "opening " + missing + ": open " + missing + ": no such file or directory"},
		{notELF, notELF + ": not an ELF core file: bad magic number"},
	} {
		_, err := OpenKcore(c.path)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("OpenKcore(%s): %v\nwant %s", filepath.Base(c.path), err, c.want)
		}
	}
	// An ELF file that is not a core file.
	elfPath := filepath.Join(dir, "vmlinux")
	if err := writeObjdumpELF(elfPath, []region{{addr: fxText, code: []byte{0xc3}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKcore(elfPath); err == nil || !strings.Contains(err.Error(), "not a kernel core file") {
		t.Errorf("OpenKcore(an ELF executable): %v", err)
	}
}
