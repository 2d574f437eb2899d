// Package debkernel fetches Debian's stock kernel packages into the user's
// cache so that tests (and offline analysis) can use a real distribution
// kernel: its vmlinuz, System.map, config and modules.
//
// Versions are resolved at run time through apt (old versions disappear from
// the archive), downloaded with `apt-get download`, checked against the
// SHA-256 that apt's signed index gives, unpacked with `dpkg-deb`, and the
// unpacked boot files are checked against the package's own md5sums.
package debkernel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Series names a kernel line Debian ships, mapped to the metapackage that
// always depends on its newest build.
var Series = map[string]string{
	"6.1":  "linux-image-amd64",
	"6.12": "linux-image-6.12-amd64",
}

// SeriesNames returns the known series, oldest first.
func SeriesNames() []string {
	names := make([]string, 0, len(Series))
	for s := range Series {
		names = append(names, s)
	}
	sort.Slice(names, func(i, j int) bool { return lessVersion(names[i], names[j]) })
	return names
}

// Kernel is one unpacked Debian kernel image package.
type Kernel struct {
	Series  string // "6.1"
	Package string // "linux-image-6.1.0-56-amd64"
	Version string // Debian package version, "6.1.192-2"
	Release string // what uname -r prints in it, "6.1.0-56-amd64"
	Dir     string // root of the unpacked package

	Vmlinuz string // Dir/boot/vmlinuz-Release
	// SystemMap is Dir/boot/System.map-Release. Debian ships a one-line
	// placeholder there (the real map is in the -dbg package, 858 MB);
	// callgraph reads the symbols compiled into the vmlinuz instead and
	// refuses the placeholder with a one-line error.
	SystemMap  string
	Config     string // Dir/boot/config-Release
	ModulesDir string // Dir/lib/modules/Release
}

// CacheDir is where unpacked kernels live: $AUTOPROF_CACHE or the user's
// cache directory, under autoprof/kernels.
func CacheDir() (string, error) {
	if d := os.Getenv("AUTOPROF_CACHE"); d != "" {
		return filepath.Join(d, "kernels"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory: %w", err)
	}
	return filepath.Join(d, "autoprof", "kernels"), nil
}

// Fetch resolves the newest package of series, downloads and unpacks it into
// the cache unless it is there already, and returns it. Where apt cannot
// resolve the series (no network, no apt), the newest complete cached copy
// of that series is used.
func Fetch(ctx context.Context, series string) (*Kernel, error) {
	meta, ok := Series[series]
	if !ok {
		return nil, fmt.Errorf("kernel series %q: unknown (known: %s)", series, strings.Join(SeriesNames(), ", "))
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	pkg, err := resolve(ctx, meta)
	if err != nil {
		if k, cerr := newestCached(cache, series); cerr == nil {
			return k, nil
		}
		return nil, fmt.Errorf("kernel series %s: %w", series, err)
	}
	k := pkg.kernel(cache, series)
	if isComplete(k.Dir, pkg.SHA256) {
		return k, nil
	}
	if err := install(ctx, pkg, k.Dir); err != nil {
		return nil, fmt.Errorf("kernel series %s: %w", series, err)
	}
	return k, nil
}

// aptPackage is what apt's index says about one binary package.
type aptPackage struct {
	Name, Version, SHA256 string
}

func (p aptPackage) kernel(cache, series string) *Kernel {
	release := strings.TrimPrefix(p.Name, "linux-image-")
	dir := filepath.Join(cache, p.Name+"_"+p.Version)
	return &Kernel{
		Series:     series,
		Package:    p.Name,
		Version:    p.Version,
		Release:    release,
		Dir:        dir,
		Vmlinuz:    filepath.Join(dir, "boot", "vmlinuz-"+release),
		SystemMap:  filepath.Join(dir, "boot", "System.map-"+release),
		Config:     filepath.Join(dir, "boot", "config-"+release),
		ModulesDir: filepath.Join(dir, "lib", "modules", release),
	}
}

var imageDep = regexp.MustCompile(`^\s*Depends:\s*(linux-image-\S+)\s*$`)

// resolve asks apt which image package the metapackage depends on now, and
// that package's version and checksum.
func resolve(ctx context.Context, meta string) (aptPackage, error) {
	out, err := command(ctx, "", "apt-cache", "depends", meta)
	if err != nil {
		return aptPackage{}, fmt.Errorf("resolving %s (is apt's index current? run apt-get update): %w", meta, err)
	}
	var name string
	for _, line := range strings.Split(out, "\n") {
		if m := imageDep.FindStringSubmatch(line); m != nil && !strings.HasSuffix(m[1], "-unsigned") {
			name = m[1]
			break
		}
	}
	if name == "" {
		return aptPackage{}, fmt.Errorf("resolving %s: apt-cache depends names no linux-image package", meta)
	}
	show, err := command(ctx, "", "apt-cache", "show", "--no-all-versions", name)
	if err != nil {
		return aptPackage{}, fmt.Errorf("resolving %s: %w", name, err)
	}
	return parseShow(name, show)
}

func parseShow(name, show string) (aptPackage, error) {
	p := aptPackage{Name: name}
	for _, line := range strings.Split(show, "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Version":
			p.Version = strings.TrimSpace(v)
		case "SHA256":
			p.SHA256 = strings.TrimSpace(v)
		}
	}
	if p.Version == "" || p.SHA256 == "" {
		return p, fmt.Errorf("apt-cache show %s: no Version or SHA256 field", name)
	}
	return p, nil
}

// install downloads the package, checks it and unpacks it into dir. It
// unpacks into a sibling temporary directory and renames it into place, so
// that a half-unpacked kernel is never mistaken for a complete one.
func install(ctx context.Context, p aptPackage, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if _, err := command(ctx, tmp, "apt-get", "download", "-q", p.Name+"="+p.Version); err != nil {
		return fmt.Errorf("downloading %s: %w", p.Name, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("downloading %s: expected one .deb, found %d", p.Name, len(debs))
	}
	if err := verifyDeb(ctx, debs[0], p.SHA256); err != nil {
		return fmt.Errorf("verifying %s: %w", p.Name, err)
	}
	root := filepath.Join(tmp, "root")
	if _, err := command(ctx, "", "dpkg-deb", "--extract", debs[0], root); err != nil {
		return fmt.Errorf("unpacking %s: %w", p.Name, err)
	}
	ctl := filepath.Join(tmp, "control")
	if _, err := command(ctx, "", "dpkg-deb", "--control", debs[0], ctl); err != nil {
		return fmt.Errorf("unpacking %s control files: %w", p.Name, err)
	}
	if err := verifyBootFiles(root, filepath.Join(ctl, "md5sums")); err != nil {
		return fmt.Errorf("verifying %s: %w", p.Name, err)
	}
	if err := os.WriteFile(filepath.Join(root, ".complete"), []byte(p.SHA256+"\n"), 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir)
	return os.Rename(root, dir)
}

// verifyDeb checks the file's SHA-256 against apt's index and lets dpkg-deb
// check the archive's structure.
func verifyDeb(ctx context.Context, path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("sha256 %s, apt's index says %s", got, want)
	}
	if _, err := command(ctx, "", "dpkg-deb", "--info", path); err != nil {
		return fmt.Errorf("dpkg-deb --info: %w", err)
	}
	return nil
}

// verifyBootFiles checks every unpacked file under boot/ against the md5sums
// control file of the package.
func verifyBootFiles(root, md5sums string) error {
	f, err := os.Open(md5sums)
	if err != nil {
		return err
	}
	defer f.Close()
	checked := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || !strings.HasPrefix(name, "boot/") {
			continue
		}
		got, err := md5File(filepath.Join(root, name))
		if err != nil {
			return err
		}
		if got != sum {
			return fmt.Errorf("%s: md5 %s, package says %s", name, got, sum)
		}
		checked++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if checked == 0 {
		return errors.New("md5sums lists no boot files")
	}
	return nil
}

func md5File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func isComplete(dir, sha string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ".complete"))
	return err == nil && strings.TrimSpace(string(b)) == sha
}

// newestCached finds the newest complete unpacked package of series.
func newestCached(cache, series string) (*Kernel, error) {
	entries, err := os.ReadDir(cache)
	if err != nil {
		return nil, err
	}
	var best *Kernel
	for _, e := range entries {
		name, version, ok := strings.Cut(e.Name(), "_")
		if !ok || !strings.HasPrefix(name, "linux-image-"+series+".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(cache, e.Name(), ".complete")); err != nil {
			continue
		}
		k := aptPackage{Name: name, Version: version}.kernel(cache, series)
		if best == nil || lessVersion(best.Version, k.Version) {
			best = k
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no cached kernel of series %s in %s", series, cache)
	}
	return best, nil
}

// lessVersion orders dotted numeric versions ("6.1" < "6.12"); non-numeric
// parts compare as strings.
func lessVersion(a, b string) bool {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' })
	}
	as, bs := split(a), split(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		var x, y int
		_, ex := fmt.Sscan(as[i], &x)
		_, ey := fmt.Sscan(bs[i], &y)
		switch {
		case ex == nil && ey == nil && x != y:
			return x < y
		case (ex != nil || ey != nil) && as[i] != bs[i]:
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

func command(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			return "", fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return stdout.String(), nil
}
