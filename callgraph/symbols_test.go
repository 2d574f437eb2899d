package callgraph

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/features/featuretest"
)

// kallsyms612 is a /proc/kallsyms excerpt in the shape of a 6.12 kernel:
// __pfx_ padding before functions, aliases, a .cold part, section markers,
// a data symbol, an init function past _etext and a module.
const kallsyms612 = `ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000000 T startup_64
ffffffff81000100 T __pfx_first
ffffffff81000110 T first
ffffffff81000110 t __first_alias
ffffffff81000140 T __pfx_second
ffffffff81000150 T second
ffffffff81000150 T __noinstr_text_start
ffffffff810001a0 t second.cold
ffffffff810001b0 T __noinstr_text_end
ffffffff810001b0 t third.constprop.0
ffffffff810001d0 T _etext
ffffffff81200000 D linux_banner
ffffffff83000000 T _sinittext
ffffffff83000000 T early_thing
ffffffff83000100 T _einittext
ffffffffc0001000 t mod_fn	[mymod]
ffffffffc0001040 t mod_last	[mymod]
ffffffffc0003000 d mod_data	[mymod]
`

func parseFixture(t *testing.T, text string) *Symbols {
	t.Helper()
	s, err := ParseKallsyms(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExtents(t *testing.T) {
	s := parseFixture(t, kallsyms612)
	for _, c := range []struct {
		name       string
		addr, size uint64
	}{
		{"startup_64", 0xffffffff81000000, 0x100}, // ends where __pfx_first begins
		{"__pfx_first", 0xffffffff81000100, 0x10},
		{"first", 0xffffffff81000110, 0x30}, // ends at __pfx_second, not at second
		{"second", 0xffffffff81000150, 0x50},
		{"second.cold", 0xffffffff810001a0, 0x10}, // ends at the marker
		{"third.constprop.0", 0xffffffff810001b0, 0x20},
		{"mod_fn", 0xffffffffc0001000, 0x40},
		{"mod_last", 0xffffffffc0001040, 0xfc0}, // the end of its page
	} {
		f, err := s.Func(c.name)
		if err != nil {
			t.Errorf("Func(%q): %v", c.name, err)
			continue
		}
		if f.Addr != c.addr || f.Size != c.size {
			t.Errorf("%s: at %#x size %#x, want %#x size %#x", c.name, f.Addr, f.Size, c.addr, c.size)
		}
	}
}

func TestFunctions(t *testing.T) {
	s := parseFixture(t, kallsyms612)
	var names []string
	for _, f := range s.Functions() {
		names = append(names, f.Name)
	}
	// Padding, markers and init text are not functions; one name per
	// address, the global one.
	want := "startup_64 first second second.cold third.constprop.0 mod_fn mod_last"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("Functions() = %s\nwant          %s", got, want)
	}
}

func TestColdParts(t *testing.T) {
	s := parseFixture(t, kallsyms612)
	cold, err := s.Func("second.cold")
	if err != nil {
		t.Fatal(err)
	}
	if cold.Parent != "second" {
		t.Errorf("second.cold: Parent %q, want second", cold.Parent)
	}
	second, _ := s.Func("second")
	if parts := s.ColdParts(second); len(parts) != 1 || parts[0].Name != "second.cold" {
		t.Errorf("ColdParts(second) = %v", parts)
	}
	for name, want := range map[string]string{"a.cold": "a", "a.cold.12": "a", "a.constprop.0.cold": "a.constprop.0", "a.coldness": "", "cold": "", "a.cold.x": ""} {
		if got := coldParent(name); got != want {
			t.Errorf("coldParent(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestFuncAtAndFormat(t *testing.T) {
	s := parseFixture(t, kallsyms612)
	for _, c := range []struct {
		addr uint64
		want string
	}{
		{0xffffffff81000110, "first"},
		{0xffffffff8100011a, "first+0xa"},
		{0xffffffff81000105, "__pfx_first+0x5"},
		{0xffffffff810001cf, "third.constprop.0+0x1f"},
		{0xffffffffc0001041, "mod_last+0x1"},
		{0xffffffff810001d0, "0xffffffff810001d0"}, // _etext: past the text
		{0xffffffff83000010, "0xffffffff83000010"}, // init text
	} {
		if got := s.Format(c.addr); got != c.want {
			t.Errorf("Format(%#x) = %s, want %s", c.addr, got, c.want)
		}
	}
	_, _, err := s.FuncAt(0xffffffff82000000)
	if !errors.Is(err, ErrNotText) || !strings.Contains(err.Error(), "0xffffffff82000000") {
		t.Errorf("FuncAt outside text: %v, want ErrNotText naming the address", err)
	}
}

func TestFuncErrors(t *testing.T) {
	s := parseFixture(t, kallsyms612+"ffffffffc0001080 t first\t[mymod]\n")
	_, err := s.Func("foo")
	if !errors.Is(err, ErrUnknownFunction) || err.Error() != `function "foo": not in the kernel's symbol table` {
		t.Errorf("unknown: %v", err)
	}
	_, err = s.Func("first")
	if !errors.Is(err, ErrAmbiguousFunction) || !strings.Contains(err.Error(), "0xffffffff81000110") || !strings.Contains(err.Error(), "[mymod]") {
		t.Errorf("ambiguous: %v", err)
	}
	if f, err := s.Func("mymod:first"); err != nil || f.Addr != 0xffffffffc0001080 {
		t.Errorf("mymod:first = %v, %v", f, err)
	}
	_, err = s.Func("early_thing")
	if !errors.Is(err, ErrNotText) || !strings.Contains(err.Error(), "init or exit text") {
		t.Errorf("init function: %v", err)
	}
	_, err = s.Func("linux_banner")
	if !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("data symbol as a function: %v", err)
	}
}

func TestLookup(t *testing.T) {
	s := parseFixture(t, kallsyms612)
	for spec, want := range map[string]string{"second": "second", "0xffffffff81000155": "second", "0x0xz": "", "0x10": ""} {
		f, err := s.Lookup(spec)
		if (err == nil) != (want != "") || err == nil && f.Name != want {
			t.Errorf("Lookup(%q) = %v, %v; want %q", spec, f.Name, err, want)
		}
	}
	if _, err := s.Lookup("0xzz"); err == nil || !strings.Contains(err.Error(), "not a hexadecimal number") {
		t.Errorf("Lookup(0xzz): %v", err)
	}
}

func TestAliasesAndMatch(t *testing.T) {
	s := parseFixture(t, kallsyms612)
	var names []string
	for _, a := range s.Aliases(0xffffffff81000000) {
		names = append(names, a.Name)
	}
	if got := strings.Join(names, " "); got != "startup_64 _stext _text" {
		t.Errorf("Aliases(_stext) = %s", got)
	}
	var matched []string
	for _, m := range s.Match(regexp.MustCompile(`^(first|mod_)`)) {
		matched = append(matched, m.String())
	}
	if got := strings.Join(matched, ","); got != "first,mod_fn [mymod],mod_last [mymod],mod_data [mymod]" {
		t.Errorf("Match = %s", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "kallsyms: no symbols"},
		{"0000000000000000 T _stext\n0000000000000000 T vfs_read\n", "kallsyms: every address is 0 (kptr_restrict hides them; read it as root)"},
		{"ffffffff81000000 T\n", `kallsyms line 1: "ffffffff81000000 T": want ADDRESS TYPE NAME`},
		{"zz T foo\n", `kallsyms line 1: "zz T foo": address is not hexadecimal`},
		{"ffffffff81000000 T foo\nffffffff81000010 T bar mod\n", `kallsyms line 2: "ffffffff81000010 T bar mod": want ADDRESS TYPE NAME [MODULE]`},
		{"ffffffff81000000 D data\n", "the symbol table has no text symbols"},
	} {
		_, err := ParseKallsyms(strings.NewReader(c.in))
		if err == nil || err.Error() != c.want {
			t.Errorf("ParseKallsyms(%q): %v\nwant %s", c.in, err, c.want)
		}
	}
}

func TestParseSystemMap(t *testing.T) {
	m := "ffffffff81000000 T _stext\nffffffff81000010 T vfs_read\nffffffff81000040 T _etext\nffffffff82000000 A abs\n"
	s, err := ParseSystemMap(strings.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	if f, err := s.Func("vfs_read"); err != nil || f.Size != 0x30 {
		t.Errorf("vfs_read = %+v, %v", f, err)
	}
	_, err = ParseSystemMap(strings.NewReader("ffffffff81000000 T vfs_read\tmod\n"))
	if err == nil {
		t.Error("a System.map line with a module tag was accepted")
	}
	placeholder := "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"
	_, err = ParseSystemMap(strings.NewReader(placeholder))
	if !errors.Is(err, ErrPlaceholderSystemMap) || !strings.Contains(err.Error(), "-dbg package") {
		t.Errorf("placeholder: %v", err)
	}
}

// TestRealKallsyms parses this machine's /proc/kallsyms and checks the
// invariants of the functions it yields.
func TestRealKallsyms(t *testing.T) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		featuretest.Require(t, err)
	}
	defer f.Close()
	s, err := ParseKallsyms(f)
	if err != nil {
		if strings.Contains(err.Error(), "every address is 0") {
			featuretest.Require(t, err)
		}
		t.Fatal(err)
	}
	start, end, ok := s.CoreText()
	if !ok {
		t.Fatal("no core text range")
	}
	funcs := s.Functions()
	if len(funcs) < 1000 {
		t.Fatalf("%d functions", len(funcs))
	}
	for i, fn := range funcs {
		if fn.Size == 0 || fn.IsPadding() || fn.IsMarker() || !fn.IsText() {
			t.Fatalf("%s: size %d type %c is not a function", fn.Name, fn.Size, fn.Type)
		}
		if fn.Module == "" && (fn.Addr < start || fn.End() > end) {
			t.Fatalf("%s [%#x, %#x) is outside the core text [%#x, %#x)", fn.Name, fn.Addr, fn.End(), start, end)
		}
		if i > 0 && funcs[i-1].End() > fn.Addr {
			t.Fatalf("%s overlaps %s", funcs[i-1].Name, fn.Name)
		}
		if got, off, err := s.FuncAt(fn.Addr + fn.Size - 1); err != nil || got.Addr != fn.Addr || off != fn.Size-1 {
			t.Fatalf("FuncAt(end of %s) = %s+%#x, %v", fn.Name, got.Name, off, err)
		}
	}
	if _, err := s.Func("vfs_read"); err != nil {
		t.Error(err)
	}
}
