package debkernel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Headers returns the directory to build out-of-tree modules for k against
// (what /lib/modules/RELEASE/build is on an installed system). It fetches
// Debian's linux-headers-RELEASE package and the -common and linux-kbuild
// packages it depends on, unpacks them into the cache (not into /usr/src,
// so that nothing is installed on the host), and points the package's
// Makefile at the unpacked -common tree. Building needs make, gcc-12 and
// pahole (for module BTF).
func Headers(ctx context.Context, k *Kernel) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	root := filepath.Join(filepath.Dir(cache), "headers", k.Release+"_"+k.Version)
	build := filepath.Join(root, "usr", "src", "linux-headers-"+k.Release)
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return build, nil
	}
	if err := fetchHeaders(ctx, k, root); err != nil {
		return "", fmt.Errorf("kernel headers for %s: %w", k.Release, err)
	}
	return build, nil
}

var headerDep = regexp.MustCompile(`^\s*Depends:\s*(linux-(headers|kbuild)-\S+)\s*$`)

func fetchHeaders(ctx context.Context, k *Kernel, root string) error {
	main := "linux-headers-" + k.Release
	out, err := command(ctx, "", "apt-cache", "depends", main+"="+k.Version)
	if err != nil {
		return fmt.Errorf("resolving %s (is apt's index current? run apt-get update): %w", main, err)
	}
	pkgs := []string{main + "=" + k.Version}
	for _, line := range strings.Split(out, "\n") {
		if m := headerDep.FindStringSubmatch(line); m != nil {
			pkgs = append(pkgs, m[1])
		}
	}
	if len(pkgs) < 3 {
		return fmt.Errorf("%s depends on %d headers/kbuild packages, want 2", main, len(pkgs)-1)
	}
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(root), ".fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if _, err := command(ctx, tmp, "apt-get", append([]string{"download", "-q"}, pkgs...)...); err != nil {
		return fmt.Errorf("downloading %s: %w", strings.Join(pkgs, " "), err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != len(pkgs) {
		return fmt.Errorf("downloading headers: got %d packages, want %d", len(debs), len(pkgs))
	}
	unpacked := filepath.Join(tmp, "root")
	for _, deb := range debs {
		if _, err := command(ctx, "", "dpkg-deb", "--info", deb); err != nil {
			return fmt.Errorf("checking %s: %w", filepath.Base(deb), err)
		}
		if _, err := command(ctx, "", "dpkg-deb", "--extract", deb, unpacked); err != nil {
			return fmt.Errorf("unpacking %s: %w", filepath.Base(deb), err)
		}
	}
	if err := relocateMakefile(filepath.Join(unpacked, "usr", "src", "linux-headers-"+k.Release, "Makefile"), unpacked, root); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(unpacked, ".complete"), nil, 0o644); err != nil {
		return err
	}
	os.RemoveAll(root)
	return os.Rename(unpacked, root)
}

// relocateMakefile rewrites the absolute include of the -common tree
// ("include /usr/src/linux-headers-R-common/Makefile") to the cache.
func relocateMakefile(path, unpacked, root string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("include /usr/src/")) {
		return fmt.Errorf("%s: no include of /usr/src to relocate", path)
	}
	b = bytes.ReplaceAll(b, []byte("include /usr/src/"), []byte("include "+filepath.Join(root, "usr", "src")+"/"))
	return os.WriteFile(path, b, 0o644)
}
