package searchtest

import (
	"strings"
	"testing"
)

// TestTruthTableRepeated: where trees were hunted more than once, the
// table says how often each one's first finding was right; with one run
// each it says nothing more.
func TestTruthTableRepeated(t *testing.T) {
	scores := []TreeScore{
		{Tree: "gt1", FirstRight: true}, {Tree: "gt2", FirstRight: true}, {Tree: "gt3", FirstRight: false},
		{Tree: "gt1", FirstRight: true}, {Tree: "gt2", FirstRight: false}, {Tree: "gt3", FirstRight: false},
		{Tree: "gt1", FirstRight: true}, {Tree: "gt2", FirstRight: true}, {Tree: "gt3", FirstRight: true},
	}
	var b strings.Builder
	TruthTable(&b, "three runs", scores)
	want := "runs per tree up to 3: first right in every run 1 of 3 trees, in most runs 2; missed at least once: gt2 2/3, gt3 1/3"
	if !strings.Contains(b.String(), want) {
		t.Errorf("table:\n%s\nwant the line %q", b.String(), want)
	}
	b.Reset()
	TruthTable(&b, "one run", scores[:3])
	if strings.Contains(b.String(), "runs per tree") {
		t.Errorf("one run per tree, and the table speaks of runs per tree:\n%s", b.String())
	}
}
