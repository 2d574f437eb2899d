package instrument

import (
	"fmt"
	"strings"
	"testing"
)

// TestSpecRoundTrip: every spec Spec.String writes, ParseSpec reads back
// as the same spec, module functions included.
func TestSpecRoundTrip(t *testing.T) {
	for _, c := range []struct {
		in, out string
		spec    Spec
	}{
		{"vfs_read", "vfs_read:timer", Spec{Point: Point{Func: "vfs_read"}, Kind: Timer}},
		{"vfs_read:exit", "vfs_read:exit", Spec{Point: Point{Func: "vfs_read"}, Kind: ExitCount}},
		{"vfs_read+26", "vfs_read+0x1a:entry", Spec{Point: Point{Func: "vfs_read", Offset: 0x1a}, Kind: Count}},
		{"vfs_read+0x1a:targets", "vfs_read+0x1a:targets", Spec{Point: Point{Func: "vfs_read", Offset: 0x1a}, Kind: Targets}},
		{"callee@caller+0x9", "callee@caller+0x9:timer", Spec{Point: Point{Func: "caller", Offset: 9, Callee: "callee"}, Kind: Timer}},
		{"ext4:ext4_file_read_iter:timer", "ext4:ext4_file_read_iter:timer", Spec{Point: Point{Func: "ext4:ext4_file_read_iter"}, Kind: Timer}},
		{"ext4:ext4_file_read_iter:entry", "ext4:ext4_file_read_iter:entry", Spec{Point: Point{Func: "ext4:ext4_file_read_iter"}, Kind: Count}},
		{"ext4:ext4_file_read_iter+32:entry", "ext4:ext4_file_read_iter+0x20:entry", Spec{Point: Point{Func: "ext4:ext4_file_read_iter", Offset: 0x20}, Kind: Count}},
		{"ext4:ext4_file_read_iter+0x20:targets", "ext4:ext4_file_read_iter+0x20:targets", Spec{Point: Point{Func: "ext4:ext4_file_read_iter", Offset: 0x20}, Kind: Targets}},
		{"jbd2:jbd2_journal_start@ext4:ext4_dirty_inode+0x30:timer", "jbd2:jbd2_journal_start@ext4:ext4_dirty_inode+0x30:timer",
			Spec{Point: Point{Func: "ext4:ext4_dirty_inode", Offset: 0x30, Callee: "jbd2:jbd2_journal_start"}, Kind: Timer}},
		{"mod:timer:timer", "mod:timer:timer", Spec{Point: Point{Func: "mod:timer"}, Kind: Timer}},
		{"mod:timer", "mod:timer", Spec{Point: Point{Func: "mod"}, Kind: Timer}},
		{"callee@mod:caller+9:timer", "callee@mod:caller+0x9:timer", Spec{Point: Point{Func: "mod:caller", Offset: 9, Callee: "callee"}, Kind: Timer}},
	} {
		spec, err := ParseSpec(c.in)
		if err != nil || spec.Point != c.spec.Point || spec.Kind != c.spec.Kind {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", c.in, spec, err, c.spec)
			continue
		}
		if s := spec.String(); s != c.out {
			t.Errorf("ParseSpec(%q).String() = %q, want %q", c.in, s, c.out)
		}
		again, err := ParseSpec(spec.String())
		if err != nil || again.Point != spec.Point || again.Kind != spec.Kind {
			t.Errorf("%q: %s reads back as %+v, %v", c.in, spec, again, err)
		}
	}
}

func TestParseSpecErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "no function name",
		"vfs_read+zz":              `offset "zz" is not a number`,
		"vfs_read+0x1a:bogus":      `instrument kind "bogus"`,
		"vfs_read:timr":            `instrument kind "timr"`,
		"ext4:ext4_file_read_iter": "a module's function takes its kind: MODULE:FUNC:KIND",
		"m:c@m:f+9":                "a module's function takes its kind",
		"a:b:c:timer":              `function "a:b:c": want FUNC or MODULE:FUNC`,
		":vfs_read:entry":          "want FUNC or MODULE:FUNC",
		"ext4::timer":              "want FUNC or MODULE:FUNC",
		"callee@caller":            "needs the call's offset",
		"callee@caller+9:entry":    "a call site takes a timer",
		"vfs_read+0x1a:timer":      "a timer needs a function entry",
		"m:@caller+9:timer":        "want FUNC or MODULE:FUNC",
	} {
		_, err := ParseSpec(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSpec(%q): %v, want an error saying %q", in, err, want)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"vfs_read", "vfs_read+0x1a", "a:timer", "b+12:targets", "x:exit",
		"ext4:ext4_file_read_iter:timer", "m:f+0x10:entry", "c@m:f+0x9:timer", "m:c@f+9:timer", "vfs_read:timr"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseSpec(s)
		if err != nil {
			return
		}
		again, err := ParseSpec(spec.String())
		if err != nil || again.Point != spec.Point || again.Kind != spec.Kind {
			t.Fatalf("%q -> %s -> %+v, %v", s, spec, again, err)
		}
	})
}

// FuzzSpecString builds specs from parts, a function written MODULE:FUNC
// as the search and the module backend name them, and checks that every
// spec whose point has a written form reads back from Spec.String.
func FuzzSpecString(f *testing.F) {
	f.Add("ext4", "ext4_file_read_iter", "", uint32(0), uint8(Timer))
	f.Add("", "vfs_read", "", uint32(0x1a), uint8(Targets))
	f.Add("", "caller", "jbd2:jbd2_journal_start", uint32(9), uint8(Timer))
	f.Add("mod", "timer", "", uint32(0), uint8(ExitCount))
	f.Fuzz(func(t *testing.T, module, fn, callee string, off uint32, kind uint8) {
		if module != "" {
			fn = module + ":" + fn
		}
		spec := Spec{Point: Point{Func: fn, Offset: uint64(off), Callee: callee}, Kind: Kind(kind)}
		if p, err := ParsePoint(spec.Point.String()); err != nil || p != spec.Point {
			return // no written form: a name with @, + or two colons, a call site at 0
		}
		if _, known := kindNames[spec.Kind]; !known || spec.checkKind() != nil {
			return
		}
		again, err := ParseSpec(spec.String())
		if err != nil || again.Point != spec.Point || again.Kind != spec.Kind {
			t.Fatalf("%+v -> %q -> %+v, %v", spec, spec.String(), again, err)
		}
	})
}

// TestCgroupDir: a relative cgroup is below CgroupRoot, an absolute one
// stays as it is.
func TestCgroupDir(t *testing.T) {
	for _, c := range []struct{ cgroup, want string }{
		{"system.slice", CgroupRoot + "/system.slice"},
		{"/sys/fs/cgroup/unified/a", "/sys/fs/cgroup/unified/a"},
		{"", ""},
	} {
		if got := (Target{Cgroup: c.cgroup}).CgroupDir(); got != c.want {
			t.Errorf("CgroupDir(%q) = %q, want %q", c.cgroup, got, c.want)
		}
	}
}

// TestCheckPIDs: 0 and negative pids are refused, named; no pid (the whole
// system) and real ones pass.
func TestCheckPIDs(t *testing.T) {
	for _, c := range []struct {
		pids []int
		want string
	}{
		{nil, ""},
		{[]int{1, 4242}, ""},
		{[]int{12, 0}, "pid 0: not a process id"},
		{[]int{-3, 0}, "pid -3: not a process id"},
	} {
		err := Target{PIDs: c.pids}.CheckPIDs()
		if got := fmt.Sprint(err); c.want == "" && err != nil || c.want != "" && got != c.want {
			t.Errorf("CheckPIDs(%v) = %v, want %q", c.pids, err, c.want)
		}
	}
}
