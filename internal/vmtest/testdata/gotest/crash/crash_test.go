package crash

import (
	"fmt"
	"os"
	"testing"
)

func TestBefore(t *testing.T) {}

// TestCrash stands for a guest whose kernel panicked mid-test: the test
// binary stops without a result, after the harness printed its report.
func TestCrash(t *testing.T) {
	t.Log("inserting the timers")
	fmt.Fprintln(os.Stderr, "vmtest: kernel 6.1.0-57-amd64: kernel panic")
	os.Exit(1)
}
