package vmtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
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
	f, err := os.Open(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps, err := parseModulesDep(f)
	if err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
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

func isBuiltin(builtin, name string) bool {
	name = strings.ReplaceAll(name, "-", "_")
	for _, line := range strings.Split(builtin, "\n") {
		if line != "" && moduleName(line) == name {
			return true
		}
	}
	return false
}
