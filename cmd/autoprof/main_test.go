package main

import (
	"os"
	"testing"

	"github.com/autoprof/autoprof/internal/leakcheck"
)

// TestMain fails the package's tests when they leave a kernel object
// behind: hunt and probe insert live instruments. A helper process (the
// test binary run by a test as a workload or as autoprof) is not checked:
// the instruments its parent inserts while it runs are not its leaks.
func TestMain(m *testing.M) {
	if os.Getenv("AUTOPROF_HELPER") != "" {
		os.Exit(m.Run())
	}
	os.Exit(leakcheck.Main(m))
}
