package instrument

import (
	"encoding/json"
	"testing"
)

// TestJSONOld: Misses saved before the fields had tags still read back,
// and a kind is read by its name only.
func TestJSONOld(t *testing.T) {
	var m Misses
	if err := json.Unmarshal([]byte(`{"Recursion":1,"StackDepth":2,"MapFull":3,"Unmatched":4,"Kernel":5}`), &m); err != nil || m != (Misses{1, 2, 3, 4, 5}) {
		t.Errorf("old misses: %+v %v", m, err)
	}
	if err := json.Unmarshal([]byte(`"bogus"`), new(Kind)); err == nil {
		t.Error("an unknown kind name was accepted")
	}
}
