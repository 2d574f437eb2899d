package search

import (
	"strings"
	"testing"
)

// TestJumps: a call that leaves no frame of the caller is told from the
// stack samples: the callee shows, and never below the caller.
func TestJumps(t *testing.T) {
	j := newJumps([]Stack{
		{Frames: []string{"vfs_write", "kernfs_fop_write_iter", "gt_store", "gt_f0"}},
		{Frames: []string{"vfs_write", "kernfs_fop_write_iter", "sysfs_kf_write"}},
		{Frames: []string{"vfs_write", "kernfs_fop_write_iter", "mutex_lock"}},
		{Frames: []string{"f3", "f4"}},
		{Frames: []string{"f2", "f6.cold"}},
		{Frames: []string{"f11", "f13", "f17"}},
		{Frames: []string{"f11", "f12", "f15", "f26"}},
	})
	for _, c := range []struct {
		caller, callee string
		want           bool
	}{
		{"sysfs_kf_write", "gt_store", true},         // shown, never below it
		{"kernfs_fop_write_iter", "gt_store", false}, // below it
		{"kernfs_fop_write_iter", "mutex_lock", false},
		{"sysfs_kf_write", "absent", false}, // never shown: nothing to tell
		{"f3", "f4", false},
		{"f3", "f6", true}, // a .cold part is its function
	} {
		if got := j.leaves(c.caller, c.callee); got != c.want {
			t.Errorf("leaves(%s, %s) = %v, want %v", c.caller, c.callee, got, c.want)
		}
	}
	h := &hunter{graph: map[string]*graphInfo{
		"sysfs_kf_write": {},
		"f3":             {callees: Callees{Sites: []CallSite{{Off: 0x10, Func: "f6"}}}},
		"f15":            {callees: Callees{Funcs: []string{"f24", "f26"}, Sites: []CallSite{{Off: 0x10, Func: "f24"}, {Off: 0x18, Func: "f26"}}}},
		"f16":            {callees: Callees{Funcs: []string{"f24"}, Sites: []CallSite{{Off: 0x10, Func: "f24"}}, Indirect: []uint64{0x20}}},
	}}
	for _, c := range []struct {
		path []string
		want string
	}{
		{[]string{"vfs_write", "kernfs_fop_write_iter", "sysfs_kf_write", "gt_store"}, "vfs_write;kernfs_fop_write_iter;gt_store"},
		{[]string{"vfs_write", "gt_store", "gt_store"}, "vfs_write;gt_store;gt_store"},                 // recursion is no jump
		{[]string{"f2", "f3", "f6"}, "f2;f3;f6"},                                                       // f3 calls f6: a frame
		{[]string{"vfs_write", "sysfs_kf_write", "mutex_lock"}, "vfs_write;sysfs_kf_write;mutex_lock"}, // not right below vfs_write
		// f15 only calls f24 and f26: it cannot reach f13, so f11;f15;f13
		// is no context of the samples of f11;f13 (the 6.12 truth
		// benchmark's gt10: a shadow stack's glitch took them, and the
		// tree added up to 130%).
		{[]string{"f11", "f15", "f13"}, "f11;f15;f13"},
		{[]string{"f11", "f16", "f13"}, "f11;f13"}, // an indirect site: it may jump there
	} {
		if got := strings.Join(visibleFrames(c.path, func(a, b, cc string) bool { return h.jumpEdge(j, a, b, cc) }), ";"); got != c.want {
			t.Errorf("visible frames of %q: %q, want %q", c.path, got, c.want)
		}
	}
}
