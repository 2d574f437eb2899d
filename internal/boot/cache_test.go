package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCache: a value stored for this boot and these modules comes back
// whole; other modules, a damaged file, another boot's entry or no file
// load nothing; no temporary file is left.
func TestCache(t *testing.T) {
	if _, err := ID(); err != nil {
		t.Skipf("no boot id to key the cache by: %v", err)
	}
	c := CacheAt(filepath.Join(t.TempDir(), "autoprof", "names.gob"))
	mods := []byte("ext4 1 0 - Live 0xffffffffc0000000\n")
	var got []string
	if c.Load(mods, &got) {
		t.Fatal("an empty cache gave a value")
	}
	want := []string{"vfs_read", "ksys_read", "ext4_file_read_iter"}
	if err := c.Store(mods, want); err != nil {
		t.Fatal(err)
	}
	if !c.Load(mods, &got) || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stored %q, back %q", want, got)
	}
	if c.Load([]byte("ext4 1 0 - Live 0xffffffffc0004000\n"), &got) {
		t.Error("a value stored under other module addresses came back")
	}
	var m map[string]bool
	if c.Load(mods, &m) {
		t.Error("a value of another type came back")
	}
	other := CacheAt(filepath.Join(t.TempDir(), "other.gob"))
	if err := other.Store(mods, want); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(other.Path())
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ID()
	// Another boot's id, of the same length, where this one's is.
	other2 := strings.Replace(string(b), id, strings.Repeat("0", len(id)), 1)
	if other2 == string(b) {
		t.Fatal("the boot id is not in the entry as written")
	}
	if err := os.WriteFile(other.Path(), []byte(other2), 0o600); err != nil {
		t.Fatal(err)
	}
	if other.Load(mods, &got) {
		t.Error("another boot's entry came back")
	}
	if err := os.WriteFile(c.Path(), []byte("not an entry"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.Load(mods, &got) {
		t.Error("a damaged cache file gave a value")
	}
	entries, _ := os.ReadDir(filepath.Dir(c.Path()))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("a temporary file %s was left", e.Name())
		}
	}
	var none Cache
	if none.Load(mods, &got) || none.Store(mods, want) != nil {
		t.Error("a cache with no file loaded or failed")
	}
}
