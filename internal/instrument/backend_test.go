package instrument

import (
	"strings"
	"testing"
)

// TestParseBackend: every backend parses as itself; anything else is
// refused with the names to choose from.
func TestParseBackend(t *testing.T) {
	for _, b := range Backends {
		got, err := ParseBackend(string(b))
		if err != nil || got != b {
			t.Errorf("ParseBackend(%q) = %q, %v", b, got, err)
		}
	}
	for _, bad := range []string{"", "sample", "FENTRY", "kprobes"} {
		_, err := ParseBackend(bad)
		if err == nil || !strings.Contains(err.Error(), "want one of fentry, kprobe, splice, tracepoint") {
			t.Errorf("ParseBackend(%q): %v, want a refusal naming the backends", bad, err)
		}
	}
}
