package callgraph

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/boot"
)

// TestSymbolCache: a table LiveSymbols keeps for the boot comes back
// whole, its lookups as before; under other modules it does not.
func TestSymbolCache(t *testing.T) {
	if _, err := boot.ID(); err != nil {
		t.Skipf("no boot id to key the cache by: %v", err)
	}
	syms, err := ParseKallsyms(strings.NewReader(
		"ffffffff81000000 T _stext\nffffffff81001000 T vfs_read\nffffffff81001100 t vfs_read.cold\nffffffff81002000 T _etext\n" +
			"ffffffffc0001000 t ext4_file_read_iter\t[ext4]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := boot.CacheAt(filepath.Join(t.TempDir(), symbolCacheName))
	mods := []byte("ext4 1 0 - Live 0xffffffffc0000000\n")
	if _, ok := loadSymbols(c, mods); ok {
		t.Fatal("an empty cache gave a table")
	}
	if err := storeSymbols(c, mods, syms); err != nil {
		t.Fatal(err)
	}
	got, ok := loadSymbols(c, mods)
	if !ok {
		t.Fatal("the table stored for this boot and these modules did not come back")
	}
	if len(got.all) != len(syms.all) {
		t.Errorf("%d symbols back, %d stored", len(got.all), len(syms.all))
	}
	for _, name := range []string{"vfs_read", "ext4_file_read_iter"} {
		a, err1 := syms.Func(name)
		b, err2 := got.Func(name)
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("%s: stored %+v (%v), back %+v (%v)", name, a, err1, b, err2)
		}
	}
	if _, ok := loadSymbols(c, []byte("ext4 1 0 - Live 0xffffffffc0004000\n")); ok {
		t.Error("a table stored under other module addresses came back")
	}
}
