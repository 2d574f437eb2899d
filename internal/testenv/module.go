package testenv

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/kernel"
)

// LoadModule loads the kernel module file at path (for the test modules
// a vmtest.json prepare step builds); one already loaded is fine.
func LoadModule(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("the test module (built by vmtest.json's prepare step): %v", err)
	}
	defer f.Close()
	if err := kernel.FinitModule(f, "", false); err != nil && !errors.Is(err, kernel.EEXIST) {
		tb.Fatalf("loading %s: %v", path, err)
	}
}

// UnloadModule removes module name, trying up to tries times every
// interval while something (an open file, an RCU grace period) briefly
// holds it; one not loaded is fine. It returns the last error.
func UnloadModule(name string, tries int, every time.Duration) error {
	var err error
	for i := 0; i < tries; i++ {
		if err = kernel.DeleteModule(name); err == nil || errors.Is(err, kernel.ENOENT) {
			return nil
		}
		time.Sleep(every)
	}
	return err
}
