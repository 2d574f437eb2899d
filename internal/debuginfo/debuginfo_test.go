package debuginfo

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// twoSections is a relocatable file's source: one function in .text and
// one in .text.unlikely, both at offset 0 of their section.
const twoSections = `static inline __attribute__((always_inline)) int twice(int x)
{
	return x * 2 + 1;
}

int plain(int x)
{
	x *= 3;
	return twice(x);
}

__attribute__((section(".text.unlikely"), noinline)) int cold(int x)
{
	x += 7;
	return x * 5;
}
`

// compileExec builds src into an executable with DWARF whose code starts
// at _stext, as vmlinux's does.
func compileExec(t *testing.T, src string) string {
	t.Helper()
	cc := cCompiler(t)
	dir := t.TempDir()
	c := filepath.Join(dir, "exec.c")
	if err := os.WriteFile(c, []byte("void _stext(void) {}\n"+src), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "vmlinux")
	if out, err := exec.Command(cc, "-g", "-O1", "-static", "-nostdlib", "-Wl,--build-id=sha1", "-Wl,-e,_stext", "-o", exe, c).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cc, err, out)
	}
	return exe
}

// cCompiler returns the C compiler the kernel's modules are built with.
func cCompiler(t *testing.T) string {
	t.Helper()
	for _, cc := range []string{"gcc-12", "gcc"} {
		if p, err := exec.LookPath(cc); err == nil {
			return p
		}
	}
	t.Skip("no C compiler (gcc) to build the test's ELF files with")
	return ""
}

// compile builds src into a relocatable object with DWARF and a build ID,
// as Kbuild links a module (ld -r --build-id).
func compile(t *testing.T, src string) string {
	t.Helper()
	cc := cCompiler(t)
	dir := t.TempDir()
	c := filepath.Join(dir, "two.c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	o, ko := filepath.Join(dir, "two.o"), filepath.Join(dir, "two.ko")
	for _, args := range [][]string{
		{"-c", "-g", "-O1", "-o", o, c},
		{"-nostdlib", "-r", "-Wl,--build-id=sha1", "-o", ko, o},
	} {
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
		}
	}
	return ko
}

// funcLines returns the lines (1-based) from the line declaring fn to its
// closing brace in src.
func funcLines(t *testing.T, src, fn string) (int, int) {
	t.Helper()
	lines := strings.Split(src, "\n")
	for i, l := range lines {
		if strings.Contains(l, " "+fn+"(") {
			for j := i; j < len(lines); j++ {
				if lines[j] == "}" {
					return i + 1, j + 1
				}
			}
		}
	}
	t.Fatalf("no function %s in the source", fn)
	return 0, 0
}

// TestModuleLines: a relocatable file's sections placed apart give each
// function's addresses its own lines (placed where they are, .text and
// .text.unlikely both start at 0 and the second's code would read the
// first's lines).
func TestModuleLines(t *testing.T) {
	obj := compile(t, twoSections)
	ef, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	ef.Close()
	// .text.unlikely after .text, then before it (its line table's
	// sequence is then out of address order).
	for _, bases := range []map[string]uint64{
		{".text": 0xffffffffc0a01000, ".text.unlikely": 0xffffffffc0a09000, ".data": 0xffffffffc0a0c000},
		{".text": 0xffffffffc0a09000, ".text.unlikely": 0xffffffffc0a01000, ".data": 0xffffffffc0a0c000},
	} {
		checkModuleLines(t, obj, syms, ef.Sections, bases)
	}
}

// checkModuleLines checks the lines of obj's functions with its sections
// at bases.
func checkModuleLines(t *testing.T, obj string, syms []elf.Symbol, secs []*elf.Section, bases map[string]uint64) {
	t.Helper()
	addr := map[string]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			addr[s.Name] = bases[secs[s.Section].Name] + s.Value
		}
	}
	if addr["plain"]-bases[".text"] != 0 || addr["cold"]-bases[".text.unlikely"] != 0 {
		t.Fatalf("plain and cold not both at offset 0 of their sections: %#x", addr)
	}
	im, err := Open(obj, Load{Sections: bases})
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"plain", "cold"} {
		first, last := funcLines(t, twoSections, fn)
		for _, off := range []uint64{0, 4} {
			fs, err := im.Lookup(addr[fn] + off)
			if err != nil {
				t.Fatalf("%s+%d: %v", fn, off, err)
			}
			l := fs[len(fs)-1]
			if l.Func != fn || filepath.Base(l.File) != "two.c" || l.Line < first || l.Line > last || l.FuncLine != first {
				t.Errorf("%s+%d: %+v, want %s at two.c lines %d to %d, declared at %d", fn, off, l, fn, first, last, first)
			}
		}
	}
	// Somewhere in plain is twice's code, inlined at its call.
	first, last := funcLines(t, twoSections, "twice")
	call := strings.Count(twoSections[:strings.Index(twoSections, "return twice(x)")], "\n") + 1
	inlined := false
	for off := uint64(0); off < 32 && !inlined; off++ {
		fs, err := im.Lookup(addr["plain"] + off)
		if err != nil || len(fs) != 2 {
			continue
		}
		inlined = true
		if fs[0].Func != "twice" || fs[0].Line < first || fs[0].Line > last || fs[1].Func != "plain" || fs[1].Line != call {
			t.Errorf("plain+%d: %+v, want twice at lines %d to %d inlined into plain at line %d", off, fs, first, last, call)
		}
	}
	if !inlined {
		t.Error("no address in plain has twice inlined")
	}
	if _, err := im.Lookup(bases[".data"]); err == nil {
		t.Error("an address outside the code has a line")
	}
	if _, err := Open(obj, Load{Sections: map[string]uint64{".bss.none": 1}}); err == nil {
		t.Error("a file none of whose sections is placed opened")
	}
}

// TestKernelLines: an executable's addresses move by the running
// kernel's _stext against the file's (KASLR).
func TestKernelLines(t *testing.T) {
	exe := compileExec(t, twoSections)
	ef, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := ef.Symbols()
	ef.Close()
	at := map[string]uint64{}
	for _, s := range syms {
		at[s.Name] = s.Value
	}
	const shift = 0x1c00000
	im, err := Open(exe, Load{Text: at["_stext"] + shift})
	if err != nil {
		t.Fatal(err)
	}
	first, last := funcLines(t, twoSections, "cold")
	fs, err := im.Lookup(at["cold"] + shift)
	if err != nil {
		t.Fatal(err)
	}
	if l := fs[len(fs)-1]; l.Func != "cold" || l.Line < first || l.Line > last {
		t.Errorf("cold, moved by %#x: %+v, want lines %d to %d", shift, fs, first, last)
	}
	if _, err := Open(exe, Load{}); err == nil {
		t.Error("an executable opened without the running _stext")
	}
}

// TestFind: a file is found by its build ID in the debuginfo layout and
// by walking a directory; another ID is not found.
func TestFind(t *testing.T) {
	obj := compile(t, twoSections)
	id, err := elfBuildID(obj)
	if err != nil {
		t.Fatalf("ld -r --build-id wrote no build ID: %v", err)
	}
	root := t.TempDir()
	layout := filepath.Join(root, ".build-id", id[:2], id[2:]+".debug")
	if err := os.MkdirAll(filepath.Dir(layout), 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(obj)
	if err := os.WriteFile(layout, b, 0o644); err != nil {
		t.Fatal(err)
	}
	walked := filepath.Join(t.TempDir(), "sub", "two.ko")
	os.MkdirAll(filepath.Dir(walked), 0o755)
	if err := os.WriteFile(walked, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s    Search
		want string
	}{
		{Search{BuildIDDirs: []string{root}}, layout},
		{Search{BuildIDDirs: []string{filepath.Join(root, ".build-id")}}, layout},
		{Search{Dirs: []string{filepath.Dir(filepath.Dir(walked))}}, walked},
		{Search{Files: []string{walked}}, walked},
	} {
		if got, err := c.s.Find(id); err != nil || got != c.want {
			t.Errorf("Find(%s) in %+v = %q, %v; want %q", id, c.s, got, err, c.want)
		}
	}
	other := strings.Repeat("ab", 20)
	if _, err := (Search{BuildIDDirs: []string{root}, Dirs: []string{filepath.Dir(walked)}}).Find(other); err == nil {
		t.Errorf("Find(%s) found a file of build ID %s", other, id)
	}
	if _, err := (Search{}).Find("zz"); err == nil {
		t.Error("a malformed build ID was looked for")
	}
}

// TestParseBuildID: the GNU note is found after another; a note list
// without one is an error.
func TestParseBuildID(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b bytes.Buffer
		n := append([]byte(name), 0)
		for _, v := range []uint32{uint32(len(n)), uint32(len(desc)), typ} {
			b.Write([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
		}
		b.Write(n)
		b.Write(make([]byte, int(align4(uint64(len(n))))-len(n)))
		b.Write(desc)
		b.Write(make([]byte, int(align4(uint64(len(desc))))-len(desc)))
		return b.Bytes()
	}
	id, _ := hex.DecodeString("0123456789abcdef0123456789abcdef01234567")
	notes := append(note("Xen", 6, []byte("x")), note("GNU", ntGNUBuildID, id)...)
	got, err := ParseBuildID(bytes.NewReader(notes))
	if err != nil || !bytes.Equal(got, id) {
		t.Fatalf("ParseBuildID = %x, %v; want %x", got, err, id)
	}
	if _, err := ParseBuildID(bytes.NewReader(note("Xen", 6, []byte("x")))); err == nil {
		t.Error("notes without a GNU build ID gave one")
	}
}
