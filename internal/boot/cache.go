package boot

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
)

// Cache is one value kept on disk for the rest of a boot: what the
// kernel generates line by line at every read (its symbols, its traceable
// functions), which takes seconds under emulation and which a hunt, a
// probe and the GUI each read at start-up. An entry is valid for the boot
// it was written in (its boot id) and while /proc/modules reads the same
// (the same modules at the same addresses); anything else reads the
// kernel again.
type Cache struct {
	path string // "" where there is no cache directory
}

// cacheHeader is what an entry starts with; the value follows it in the
// same gob stream.
type cacheHeader struct {
	BootID  string
	Modules [sha256.Size]byte
}

// OpenCache returns the cache file name under the user's cache directory
// (os.UserCacheDir, then autoprof/); one with no path where there is no
// such directory, which loads nothing and stores nothing.
func OpenCache(name string) Cache {
	dir, err := os.UserCacheDir()
	if err != nil {
		return Cache{}
	}
	return CacheAt(filepath.Join(dir, "autoprof", name))
}

// CacheAt returns the cache kept in the file path.
func CacheAt(path string) Cache { return Cache{path: path} }

// Path returns the cache's file, "" where there is none.
func (c Cache) Path() string { return c.path }

// Load decodes into v the value stored in this boot under these modules
// (the contents of /proc/modules), and reports whether there was one.
func (c Cache) Load(modules []byte, v any) bool {
	if c.path == "" {
		return false
	}
	id, err := ID()
	if err != nil {
		return false
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return false
	}
	dec := gob.NewDecoder(bytes.NewReader(b))
	var h cacheHeader
	if dec.Decode(&h) != nil || h.BootID != id || h.Modules != sha256.Sum256(modules) {
		return false
	}
	return dec.Decode(v) == nil
}

// Store writes v as the value of this boot under these modules, whole or
// not at all (a temporary file renamed over the last). Errors are
// returned for tests: callers go on without the cache.
func (c Cache) Store(modules []byte, v any) error {
	if c.path == "" {
		return nil
	}
	id, err := ID()
	if err != nil {
		return fmt.Errorf("caching %s: %w", filepath.Base(c.path), err)
	}
	var b bytes.Buffer
	enc := gob.NewEncoder(&b)
	if err := enc.Encode(cacheHeader{BootID: id, Modules: sha256.Sum256(modules)}); err != nil {
		return fmt.Errorf("caching %s: %w", filepath.Base(c.path), err)
	}
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("caching %s: %w", filepath.Base(c.path), err)
	}
	dir := filepath.Dir(c.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("caching %s: %w", filepath.Base(c.path), err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(c.path)+"-*.tmp")
	if err != nil {
		return fmt.Errorf("caching %s: %w", filepath.Base(c.path), err)
	}
	_, werr := f.Write(b.Bytes())
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("caching %s: %v %v", filepath.Base(c.path), werr, cerr)
	}
	if err := os.Rename(f.Name(), c.path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("caching %s: %w", filepath.Base(c.path), err)
	}
	return nil
}

// Modules returns /proc/modules, the second half of a cache's key: empty
// on a kernel without modules, whose lists do not change.
func Modules() ([]byte, error) {
	b, err := os.ReadFile("/proc/modules")
	if os.IsNotExist(err) {
		return nil, nil
	}
	return b, err
}
