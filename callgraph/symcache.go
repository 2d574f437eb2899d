package callgraph

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"

	"github.com/autoprof/autoprof/internal/boot"
)

// symCache keeps the running kernel's parsed symbol table on disk for the
// rest of the boot: /proc/kallsyms is generated symbol by symbol at every
// read, which takes seconds under emulation, and a hunt, a probe and the
// GUI each start by reading it. An entry is valid for the boot it was
// read in (its boot id) and while /proc/modules reads the same (the same
// modules at the same addresses); anything else reads /proc/kallsyms
// again. Symbols of BPF programs, which come and go without a module, are
// not functions the graph or a profile use (see LiveSymbols).
type symCache struct {
	path string // "" where there is no cache directory
}

// symCacheEntry is what the cache file holds.
type symCacheEntry struct {
	BootID  string
	Modules [sha256.Size]byte
	Symbols []Symbol
}

// openSymCache returns the cache of this boot: a file under the user's
// cache directory (os.UserCacheDir, then autoprof/).
func openSymCache() symCache {
	dir, err := os.UserCacheDir()
	if err != nil {
		return symCache{}
	}
	return symCache{path: filepath.Join(dir, "autoprof", "kallsyms.gob")}
}

// load returns the table cached for this boot and these modules, if any.
func (c symCache) load(modules []byte) (*Symbols, bool) {
	if c.path == "" {
		return nil, false
	}
	id, err := boot.ID()
	if err != nil || id == "" {
		return nil, false
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return nil, false
	}
	var e symCacheEntry
	if gob.NewDecoder(bytes.NewReader(b)).Decode(&e) != nil || e.BootID != id || e.Modules != sha256.Sum256(modules) {
		return nil, false
	}
	syms, err := newSymbols(e.Symbols)
	if err != nil {
		return nil, false
	}
	return syms, true
}

// store writes syms as the table of this boot and these modules, whole or
// not at all (a temporary file renamed over the last); errors are
// returned for tests, and callers go on without the cache.
func (c symCache) store(modules []byte, syms *Symbols) error {
	if c.path == "" {
		return nil
	}
	id, err := boot.ID()
	if err != nil {
		return fmt.Errorf("caching the symbol table: %w", err)
	}
	e := symCacheEntry{BootID: id, Modules: sha256.Sum256(modules), Symbols: syms.all}
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&e); err != nil {
		return fmt.Errorf("caching the symbol table: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("caching the symbol table: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(c.path), "kallsyms-*.tmp")
	if err != nil {
		return fmt.Errorf("caching the symbol table: %w", err)
	}
	_, werr := f.Write(b.Bytes())
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("caching the symbol table: %v %v", werr, cerr)
	}
	if err := os.Rename(f.Name(), c.path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("caching the symbol table: %w", err)
	}
	return nil
}
