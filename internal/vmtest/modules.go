package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// moduleDeps is modules.dep: each module's path (relative to the modules
// directory) and the paths of the modules it needs.
type moduleDeps map[string][]string

func parseModulesDep(r io.Reader) (moduleDeps, error) {
	deps := moduleDeps{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		mod, needs, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(needs)
	}
	return deps, sc.Err()
}

// moduleName is the name modprobe uses: the file name without .ko and
// compression suffixes, with '-' read as '_'.
func moduleName(p string) string {
	base := path.Base(p)
	base, _, _ = strings.Cut(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// resolve returns the module files to load for names, dependencies first.
func (d moduleDeps) resolve(names []string) ([]string, error) {
	byName := make(map[string]string, len(d))
	for mod := range d {
		byName[moduleName(mod)] = mod
	}
	var order []string
	seen := map[string]bool{}
	var visit func(mod string)
	visit = func(mod string) {
		if seen[mod] {
			return
		}
		seen[mod] = true
		// modules.dep lists dependencies so that the last one is loaded
		// first, as modprobe does.
		needs := d[mod]
		for i := len(needs) - 1; i >= 0; i-- {
			visit(needs[i])
		}
		order = append(order, mod)
	}
	for _, n := range names {
		mod, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			return nil, fmt.Errorf("kernel module %q: not in modules.dep (built in, or not built for this kernel?)", n)
		}
		visit(mod)
	}
	return order, nil
}

// addModules adds the named modules of the kernel and their dependencies to
// the initramfs and returns their guest paths in load order. Modules built
// into the kernel (listed in modules.builtin) are skipped.
func addModules(root *Initramfs, modulesDir, release string, names []string) ([]string, error) {
	builtin, _ := os.ReadFile(filepath.Join(modulesDir, "modules.builtin"))
	var wanted []string
	for _, n := range names {
		if !isBuiltin(string(builtin), n) {
			wanted = append(wanted, n)
		}
	}
	if len(wanted) == 0 {
		return nil, nil
	}
	var deps moduleDeps
	f, err := os.Open(filepath.Join(modulesDir, "modules.dep"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Debian's packages ship no modules.dep (depmod makes it at install).
		if deps, err = modinfoDeps(modulesDir, wanted); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		defer f.Close()
		if deps, err = parseModulesDep(f); err != nil {
			return nil, fmt.Errorf("reading modules.dep: %w", err)
		}
	}
	order, err := deps.resolve(wanted)
	if err != nil {
		return nil, err
	}
	guestPaths := make([]string, len(order))
	for i, mod := range order {
		guestPaths[i] = path.Join("/lib/modules", release, mod)
		if err := root.AddFile(guestPaths[i], filepath.Join(modulesDir, mod)); err != nil {
			return nil, err
		}
	}
	return guestPaths, nil
}

// modinfoDeps finds names and what they need, from each module's own
// .modinfo "depends=" (what depmod reads), in the same form as modules.dep.
func modinfoDeps(modulesDir string, names []string) (moduleDeps, error) {
	files := map[string]string{} // module name -> path relative to modulesDir
	err := filepath.WalkDir(modulesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(d.Name(), ".ko") {
			return err
		}
		rel, err := filepath.Rel(modulesDir, p)
		files[moduleName(rel)] = filepath.ToSlash(rel)
		return err
	})
	if err != nil {
		return nil, err
	}
	deps := moduleDeps{}
	var add func(name string) error
	add = func(name string) error {
		rel, ok := files[strings.ReplaceAll(name, "-", "_")]
		if !ok {
			return fmt.Errorf("kernel module %q: not found under %s (built in, or not built for this kernel?)", name, modulesDir)
		}
		if _, done := deps[rel]; done {
			return nil
		}
		needs, err := moduleDepends(filepath.Join(modulesDir, rel))
		if err != nil {
			return err
		}
		deps[rel] = nil
		for _, n := range needs {
			if err := add(n); err != nil {
				return err
			}
			deps[rel] = append(deps[rel], files[strings.ReplaceAll(n, "-", "_")])
		}
		return nil
	}
	for _, n := range names {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	return deps, nil
}

// moduleDepends reads the modules a kernel module file needs: the
// "depends=" of its .modinfo section, decompressed first where it is.
func moduleDepends(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(file, ".xz"):
		r, err = xz.NewReader(f)
	case strings.HasSuffix(file, ".zst"):
		var z *zstd.Decoder
		z, err = zstd.NewReader(f)
		if err == nil {
			defer z.Close()
			r = z
		}
	case strings.HasSuffix(file, ".gz"):
		r, err = gzip.NewReader(f)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	ef, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", file)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

func isBuiltin(builtin, name string) bool {
	name = strings.ReplaceAll(name, "-", "_")
	for _, line := range strings.Split(builtin, "\n") {
		if line != "" && moduleName(line) == name {
			return true
		}
	}
	return false
}
