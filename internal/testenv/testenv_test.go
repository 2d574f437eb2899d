package testenv

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if err := NoAsyncPreempt(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestReexecuted: TestMain's NoAsyncPreempt re-executed the binary with the
// setting, keeping the arguments (this test ran, so -test.run survived).
func TestReexecuted(t *testing.T) {
	if g := os.Getenv("GODEBUG"); !strings.Contains(g, "asyncpreemptoff=1") {
		t.Fatalf("GODEBUG=%q after NoAsyncPreempt", g)
	}
	if err := NoAsyncPreempt(); err != nil {
		t.Fatalf("a second call: %v", err)
	}
}
