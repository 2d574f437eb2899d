package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/callgraph/livetext"
	"github.com/autoprof/autoprof/internal/features/featuretest"
)

// objdumpSites disassembles code (at addr) with objdump and returns, by
// offset, what its call and jmp instructions reach: the name of a function
// started at (a call into __pfx_ padding counts for the function after
// it), "indirect" for an operand in a register or memory or a retpoline
// thunk, "" for the ftrace call and return thunks. Jumps within the
// function are left out. This uses only the symbol table and objdump's
// text, not the decoder under test.
func objdumpSites(t *testing.T, syms *callgraph.Symbols, fn callgraph.Symbol, code []byte) map[uint32]string {
	t.Helper()
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Skip("objdump (binutils) is not installed")
	}
	path := filepath.Join(t.TempDir(), "code.bin")
	if err := os.WriteFile(path, code, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("objdump", "-D", "-b", "binary", "-mi386:x86-64", "-w", "--no-show-raw-insn",
		fmt.Sprintf("--adjust-vma=%#x", fn.Addr), path).Output()
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^\s*([0-9a-f]+):\s+(call|jmp|j[a-z]+)\s+(\S+)`)
	thunk := regexp.MustCompile(`^__x86_indirect_(call_|jump_|its_)?thunk_`)
	sites := map[uint32]string{}
	for _, l := range strings.Split(string(out), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		at, _ := strconv.ParseUint(m[1], 16, 64)
		off := uint32(at - fn.Addr)
		if strings.HasPrefix(m[3], "*") {
			sites[off] = "indirect"
			continue
		}
		target, err := strconv.ParseUint(strings.TrimPrefix(m[3], "0x"), 16, 64)
		if err != nil || target >= fn.Addr && target < fn.End() {
			continue
		}
		sym, toff, err := syms.FuncAt(target)
		switch {
		case err != nil:
			sites[off] = fmt.Sprintf("%#x", target)
		case strings.HasPrefix(sym.Name, "__pfx_"):
			next, _, _ := syms.FuncAt(sym.End())
			sites[off] = next.Name
		case thunk.MatchString(sym.Name):
			sites[off] = "indirect"
		case sym.Name == "__fentry__" || strings.HasSuffix(sym.Name, "return_thunk") || sym.Parent == fn.Name:
		case toff != 0:
			sites[off] = fmt.Sprintf("%s+%#x", sym.Name, toff)
		default:
			sites[off] = sym.Name
		}
	}
	return sites
}

// commandSites runs autoprof callees with args and returns its sites by
// offset in the same form.
func commandSites(t *testing.T, args ...string) map[uint32]string {
	t.Helper()
	code, out, errOut := runCmd(append([]string{"callees", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("autoprof callees %v: exit %d: %s", args, code, errOut)
	}
	var c callsJSON
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	sites := map[uint32]string{}
	for _, s := range c.Sites {
		switch {
		case s.From != c.Function: // a .cold part's sites: not in the bytes objdump saw
		case s.Kind == "indirect":
			if s.Operand == nil {
				t.Errorf("indirect site +%#x without an operand", s.Off)
			}
			sites[s.Off] = "indirect"
		case s.TargetOff != 0:
			sites[s.Off] = fmt.Sprintf("%s+%#x", s.Target, s.TargetOff)
		case s.Target == "" && s.TargetAddress != "":
			sites[s.Off] = s.TargetAddress
		default:
			sites[s.Off] = s.Target
		}
	}
	return sites
}

func diffSites(t *testing.T, got, want map[uint32]string) {
	t.Helper()
	var offs []uint32
	for o := range want {
		offs = append(offs, o)
	}
	for o := range got {
		if _, ok := want[o]; !ok {
			offs = append(offs, o)
		}
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	for _, o := range slices.Compact(offs) {
		if got[o] != want[o] {
			t.Errorf("+%#x: autoprof callees says %q, objdump %q", o, got[o], want[o])
		}
	}
}

// TestCalleesVfsReadLive runs autoprof callees vfs_read on the running
// kernel and compares it with objdump over the same live bytes: every
// direct and tail callee, and every indirect site, at the same offsets.
func TestCalleesVfsReadLive(t *testing.T) {
	syms, err := callgraph.LiveSymbols()
	if err != nil {
		featuretest.Require(t, err)
	}
	text, err := livetext.Open()
	if err != nil {
		featuretest.Require(t, err)
	}
	defer text.Close()
	fn, err := syms.Func("vfs_read")
	if err != nil {
		t.Fatal(err)
	}
	code := make([]byte, fn.Size)
	if err := text.ReadAt(code, fn.Addr); err != nil {
		t.Fatal(err)
	}
	want := objdumpSites(t, syms, fn, code)
	got := commandSites(t, "vfs_read")
	diffSites(t, got, want)
	indirect := 0
	for _, v := range got {
		if v == "indirect" {
			indirect++
		}
	}
	t.Logf("vfs_read through %v: %d sites, %d of them indirect: %v", text, len(got), indirect, got)
	if indirect == 0 {
		t.Error("no indirect site in vfs_read (it calls file->f_op->read or ->read_iter)")
	}
}

func openImage(t *testing.T, vmlinuz string) (string, *callgraph.Image, *callgraph.Symbols) {
	t.Helper()
	im, syms, err := callgraph.OpenOfflineText(vmlinuz, "")
	if err != nil {
		t.Fatal(err)
	}
	return vmlinuz, im, syms
}

// TestOfflineBadInput checks the errors of the offline and kcore paths.
func TestOfflineBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "vmlinuz")
	os.WriteFile(junk, []byte(strings.Repeat("not a kernel. ", 10)), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"callees", "--vmlinuz", junk, "vfs_read"}, "autoprof callees: kernel image " + junk + ": not a vmlinux ELF file, and no compressed kernel inside it (is it a bzImage?)\n"},
		{[]string{"callees", "--kcore", filepath.Join(dir, "kcore"), "vfs_read"}, "autoprof callees: opening " + filepath.Join(dir, "kcore") + ": open " + filepath.Join(dir, "kcore") + ": no such file or directory\n"},
		// debug/elf's own words follow; only the prefix is ours.
		{[]string{"callees", "--kcore", junk, "vfs_read"}, "autoprof callees: " + junk + ": not an ELF core file: "},
	} {
		code, _, errOut := runCmd(c.args...)
		if strings.Contains(errOut, "kallsyms") {
			featuretest.Require(t, fmt.Errorf("no readable /proc/kallsyms here: %s", errOut))
		}
		if code != 1 || !strings.HasPrefix(errOut, c.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q\nwant %q", c.args, code, errOut, c.want)
		}
	}
}
