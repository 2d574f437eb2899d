package calltree

import "testing"

// TestMatchesHelper: a CPU plant in a shared helper is named by its
// owner, by the helper under the owner, at the owner's call site, and by
// the helper's own node under that call site; not by the helper under
// another caller.
func TestMatchesHelper(t *testing.T) {
	tr := &Tree{}
	p := Plant{Kind: CPU, Owner: "gt10_f26", Helper: "gt10_h28"}
	for _, c := range []struct {
		path []string
		want bool
	}{
		{[]string{"gt10_f0", "gt10_f26.constprop.0"}, true},
		{[]string{"gt10_f26.constprop.0", "gt10_h28"}, true},
		{[]string{"gt10_f26.constprop.0", "gt10_h28@gt10_f26.constprop.0+0x58"}, true},
		{[]string{"gt10_f26.constprop.0", "gt10_h28@gt10_f26.constprop.0+0x58", "gt10_h28"}, true},
		{[]string{"gt10_f3", "gt10_h28@gt10_f3+0x20", "gt10_h28"}, false},
		{[]string{"gt10_f3", "gt10_h28"}, false},
	} {
		if got := tr.Matches(p, c.path); got != c.want {
			t.Errorf("Matches(%v) = %v, want %v", c.path, got, c.want)
		}
	}
}
