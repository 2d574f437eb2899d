package callgraph

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/debkernel"
	"github.com/autoprof/autoprof/internal/testenv"
)

// debianImage is one Debian kernel, fetched and decompressed once per test
// binary.
type debianImage struct {
	once sync.Once
	k    *debkernel.Kernel
	im   *Image
	syms *Symbols
	err  error
}

var debianImages = map[string]*debianImage{"6.1": {}, "6.12": {}}

// debian returns Debian's kernel of a series (see internal/debkernel), its
// image and the symbol table compiled into it. It skips the test under
// -short, and where the kernel cannot be fetched.
func debian(t testing.TB, series string) (*debkernel.Kernel, *Image, *Symbols) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that fetches and decodes a whole Debian kernel")
	}
	d := debianImages[series]
	d.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if d.k, d.err = debkernel.Fetch(ctx, series); d.err != nil {
			return
		}
		if d.im, d.err = OpenImage(d.k.Vmlinuz); d.err != nil {
			return
		}
		d.syms, d.err = d.im.Symbols()
	})
	if d.k == nil && d.err != nil {
		testenv.NoKernel(t, series, d.err)
	}
	if d.err != nil {
		t.Fatal(d.err)
	}
	return d.k, d.im, d.syms
}
