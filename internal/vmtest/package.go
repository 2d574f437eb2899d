package vmtest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/debkernel"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/internal/vmtest/guest"
)

// PackageConfig is the optional vmtest.json beside a package's tests: what
// its in-VM tests need besides the test binary and testdata/.
type PackageConfig struct {
	// Modules are kernel modules of the guest kernel to load ("loop").
	Modules []string `json:"modules"`
	// Prepare are commands run on the host, in the module root, before
	// the VM boots: typically building a test kernel module against the
	// guest kernel's headers. They see KERNEL_RELEASE and KERNEL_BUILD
	// (the headers' build directory, fetched on demand) in their
	// environment and in their arguments as ${KERNEL_RELEASE} and
	// ${KERNEL_BUILD}.
	Prepare [][]string `json:"prepare"`
	// Files are paths relative to the module root, of files or of whole
	// directories, copied to the same paths in the guest (built kernel
	// modules, fixtures); they may use ${KERNEL_RELEASE}.
	Files []string `json:"files"`
	// HostTools are programs of the host's PATH that tests run in the
	// guest as a reference (objdump): each goes to /usr/bin with the
	// shared libraries ldd lists, at the paths ldd gives, the dynamic
	// loader among them.
	HostTools []string `json:"host_tools"`
	// MemoryMiB overrides the guest memory.
	MemoryMiB int `json:"memory_mib"`
}

// guestSrc is where the module's tree appears in the guest.
const guestSrc = "/src"

// ForBinary prepares cfg to run a binary built from the package in pkgDir
// (a go test binary, or a command) with args: the binary, the package's
// testdata/ and the files vmtest.json names go into the initramfs, and the
// command runs in the package's directory, as go test does on the host.
func (cfg *Config) ForBinary(binary string, args []string, pkgDir string) error {
	pkgDir, err := filepath.Abs(pkgDir)
	if err != nil {
		return err
	}
	modRoot, err := moduleRoot(pkgDir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(modRoot, pkgDir)
	if err != nil {
		return err
	}
	guestDir := path.Join(guestSrc, filepath.ToSlash(rel))
	if cfg.Root == nil {
		cfg.Root = NewInitramfs()
	}
	guestBin := path.Join("/vmtest/bin", filepath.Base(binary))
	if err := cfg.Root.AddFile(guestBin, binary); err != nil {
		return err
	}
	if err := checkStatic(binary); err != nil {
		return err
	}
	if st, err := os.Stat(filepath.Join(pkgDir, "testdata")); err == nil && st.IsDir() {
		if err := cfg.Root.AddTree(path.Join(guestDir, "testdata"), filepath.Join(pkgDir, "testdata")); err != nil {
			return err
		}
	}
	pc, err := readPackageConfig(pkgDir)
	if err != nil {
		return err
	}
	if err := cfg.prepareFiles(pc, modRoot); err != nil {
		return fmt.Errorf("%s/vmtest.json: %w", rel, err)
	}
	for _, tool := range pc.HostTools {
		if err := cfg.Root.addHostTool(tool); err != nil {
			return fmt.Errorf("%s/vmtest.json: %w", rel, err)
		}
	}
	cfg.Modules = append(cfg.Modules, pc.Modules...)
	if pc.MemoryMiB != 0 {
		cfg.MemoryMiB = pc.MemoryMiB
	}
	cfg.Guest.Args = append([]string{guestBin}, args...)
	cfg.Guest.Dir = guestDir
	cfg.Guest.Env = append(cfg.Guest.Env, passEnv()...)
	cfg.Root.AddBytes(path.Join(guestDir, ".keep"), nil, 0o644)
	return nil
}

// prepareFiles runs the package's host-side commands for the guest kernel
// and copies the files it names into the initramfs. Other vmtest
// processes (another kernel tested at once) may build the same files for
// their kernel: the commands and the copies are made under one lock per
// module root, and the files are read now, not when the initramfs is
// written.
func (cfg *Config) prepareFiles(pc PackageConfig, modRoot string) error {
	if len(pc.Prepare) == 0 && len(pc.Files) == 0 {
		return nil
	}
	unlock, err := kernel.LockFile(filepath.Join(os.TempDir(), fmt.Sprintf("autoprof-vmtest-%x.lock", sha256.Sum256([]byte(modRoot)))))
	if err != nil {
		return err
	}
	defer unlock()
	vars := map[string]string{"KERNEL_RELEASE": cfg.Kernel.Release}
	if len(pc.Prepare) > 0 {
		if err := cfg.prepare(pc.Prepare, modRoot, vars); err != nil {
			return err
		}
	}
	for _, f := range pc.Files {
		f = os.Expand(f, func(k string) string { return vars[k] })
		err := filepath.WalkDir(filepath.Join(modRoot, f), func(host string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("%s: not a regular file", host)
			}
			rel, err := filepath.Rel(modRoot, host)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(host)
			if err != nil {
				return err
			}
			cfg.Root.AddBytes(path.Join(guestSrc, filepath.ToSlash(rel)), data, info.Mode().Perm())
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// prepare runs the package's host-side commands for the guest kernel.
func (cfg *Config) prepare(cmds [][]string, modRoot string, vars map[string]string) error {
	build, err := debkernel.Headers(context.Background(), cfg.Kernel)
	if err != nil {
		return err
	}
	vars["KERNEL_BUILD"] = build
	for _, c := range cmds {
		if len(c) == 0 {
			continue
		}
		args := make([]string, len(c))
		for i, a := range c {
			args[i] = os.Expand(a, func(k string) string { return vars[k] })
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = modRoot
		cmd.Env = append(os.Environ(), "KERNEL_RELEASE="+vars["KERNEL_RELEASE"], "KERNEL_BUILD="+build)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("preparing (%s): %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// TestTimeout reads -test.timeout from a go test binary's arguments, so that
// the VM's own timeout can leave the test binary time to report a hang
// itself (0 if absent).
func TestTimeout(args []string) time.Duration {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "-test.timeout=")
		if !ok && a == "-test.timeout" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			d, _ := time.ParseDuration(v)
			return d
		}
	}
	return 0
}

// passEnv returns the host's AUTOPROF_* settings to pass to the guest.
func passEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AUTOPROF_") && !strings.HasPrefix(kv, "AUTOPROF_CACHE=") && !strings.HasPrefix(kv, "AUTOPROF_VM") {
			env = append(env, kv)
		}
	}
	return env
}

// addHostTool adds the host's program name as /usr/bin/NAME with the
// shared libraries it needs, each at the path ldd names it by (the file
// behind a symbolic link copied there).
func (r *Initramfs) addHostTool(name string) error {
	bin, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("host tool %s: %w (install it on the host)", name, err)
	}
	files := map[string]string{path.Join("/usr/bin", name): bin}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return fmt.Errorf("host tool %s: listing its libraries with ldd: %w", name, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			files[f[2]] = f[2] // libx.so.1 => /lib/.../libx.so.1 (0x...)
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			files[f[0]] = f[0] // the dynamic loader
		}
	}
	for guestPath, host := range files {
		real, err := filepath.EvalSymlinks(host)
		if err != nil {
			return fmt.Errorf("host tool %s: %w", name, err)
		}
		if err := r.AddFile(guestPath, real); err != nil {
			return fmt.Errorf("host tool %s: %w", name, err)
		}
	}
	return nil
}

func readPackageConfig(pkgDir string) (PackageConfig, error) {
	var pc PackageConfig
	b, err := os.ReadFile(filepath.Join(pkgDir, "vmtest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return pc, nil
	}
	if err != nil {
		return pc, err
	}
	if err := json.Unmarshal(b, &pc); err != nil {
		return pc, fmt.Errorf("%s: %w", filepath.Join(pkgDir, "vmtest.json"), err)
	}
	return pc, nil
}

// moduleRoot finds the directory holding go.mod at or above dir.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s is not inside a Go module", dir)
		}
	}
}

// GuestOutDir is where a command in the guest leaves files for the host.
const GuestOutDir = guest.OutDir
