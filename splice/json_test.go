package splice

import (
	"encoding/json"
	"regexp"
	"testing"
)

// TestJSONStyle: what probe --json and run.json hold of splice's types is
// snake_case with kinds by name, and Misses saved before the fields had
// tags still read back.
func TestJSONStyle(t *testing.T) {
	c := ContextReading{Path: Path{{Func: "vfs_read"}, {Func: "rw_verify_area", Offset: 0x10}}, Kind: Timer, Calls: 3}
	sums := Summarize(&Reading{Contexts: []ContextReading{c}, Misses: Misses{StackDepth: 2}}, 0)
	b, err := json.Marshal(sums)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range regexp.MustCompile(`"([A-Za-z_]+)":`).FindAllStringSubmatch(string(b), -1) {
		if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(key[1]) {
			t.Errorf("key %q is not snake_case in %s", key[1], b)
		}
	}
	if !regexp.MustCompile(`"kind":"timer"`).Match(b) {
		t.Errorf("the kind is not named: %s", b)
	}
	var back []Summary
	if err := json.Unmarshal(b, &back); err != nil || back[0].Contexts[0].Kind != Timer || back[0].Contexts[0].Path[1].Offset != 0x10 {
		t.Errorf("round trip: %+v %v", back, err)
	}
	var m Misses
	if err := json.Unmarshal([]byte(`{"Recursion":1,"StackDepth":2,"MapFull":3,"Unmatched":4,"Kernel":5}`), &m); err != nil || m != (Misses{1, 2, 3, 4, 5}) {
		t.Errorf("old misses: %+v %v", m, err)
	}
	if err := json.Unmarshal([]byte(`"bogus"`), new(Kind)); err == nil {
		t.Error("an unknown kind name was accepted")
	}
}
