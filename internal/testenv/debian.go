package testenv

import (
	"context"
	"os"
	"testing"

	"github.com/autoprof/autoprof/internal/debkernel"
)

// OfflineEnv, set to 1, lets tests that need a Debian kernel package skip
// where none can be fetched (a machine without the archive). Unset, a
// failed fetch fails the test: make test fetches the kernels first, so a
// fetch that fails there is a fault, not a missing feature.
const OfflineEnv = "AUTOPROF_OFFLINE"

// DebianKernel fetches (or finds in the cache) the current Debian kernel
// of series for a test, failing the test where it cannot.
func DebianKernel(tb testing.TB, ctx context.Context, series string) *debkernel.Kernel {
	tb.Helper()
	k, err := debkernel.Fetch(ctx, series)
	if err != nil {
		NoKernel(tb, series, err)
	}
	return k
}

// NoKernel ends a test whose Debian kernel of series could not be had:
// it skips with OfflineEnv=1 and fails otherwise.
func NoKernel(tb testing.TB, series string, err error) {
	tb.Helper()
	if os.Getenv(OfflineEnv) == "1" {
		tb.Skipf("no Debian %s kernel, and %s=1: %v", series, OfflineEnv, err)
	}
	tb.Fatalf("fetching Debian's %s kernel (set %s=1 to skip where the archive cannot be reached): %v", series, OfflineEnv, err)
}
