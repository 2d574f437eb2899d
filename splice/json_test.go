package splice

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
)

// TestJSONStyle: what probe --json and run.json hold of splice's types is
// snake_case with kinds by name.
func TestJSONStyle(t *testing.T) {
	c := instrument.ContextReading{Path: instrument.Path{{Func: "vfs_read"}, {Func: "rw_verify_area", Offset: 0x10}}, Kind: instrument.Timer, Calls: 3}
	sums := Summarize(&instrument.Reading{Contexts: []instrument.ContextReading{c}, Misses: instrument.Misses{StackDepth: 2}}, 0)
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
	if err := json.Unmarshal(b, &back); err != nil || back[0].Contexts[0].Kind != instrument.Timer || back[0].Contexts[0].Path[1].Offset != 0x10 {
		t.Errorf("round trip: %+v %v", back, err)
	}
}
