// Package splicer builds, loads and talks to autoprof_splice, the kernel
// module that splices counters and timers into live kernel text (its C
// sources are in module/, see module/main.c).
//
// The module reaches the unexported kernel internals it needs (Internals:
// text_poke, insn_decode, the kernel's *_text_reserved() checks, text_mutex,
// the exception and jump tables...) only through addresses this loader
// passes in, each checked inside the module against kallsyms; it calls the
// functions through static calls it retargets at load, never through a
// pointer. It refuses to load on a kernel whose release or vmlinux build id
// differ from what the loader measured, to a caller without CAP_SYS_MODULE,
// and under lockdown. Everything it splices belongs to an open file
// of its control file (/proc/autoprof_splice): closing it, or the death of
// the process holding it, withdraws every splice; so do the dead-man switch
// when the holder stops calling in, and rmmod.
package splicer

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/autoprof/autoprof/internal/kernel"
)

// ModuleName is the module's name in /proc/modules.
const ModuleName = "autoprof_splice"

// ControlPath is the module's control file: a session is an open file of
// it. It is a proc entry, not a device, so that an open session does not
// hold the module (see module/main.c).
const ControlPath = "/proc/" + ModuleName

// ModuleEnv names a built module for autoprof to load where it cannot
// build one (no kernel headers, no compiler).
const ModuleEnv = "AUTOPROF_SPLICE_MODULE"

//go:embed module/Kbuild module/*.c module/*.h module/*.S
var sources embed.FS

// HeadersDir returns where the running kernel's headers are, for Build:
// /lib/modules/RELEASE/build.
func HeadersDir() (string, error) {
	rel, err := kernel.Release()
	if err != nil {
		return "", err
	}
	return filepath.Join("/lib/modules", rel, "build"), nil
}

// Build compiles the module against the kernel headers in kdir (what
// /lib/modules/RELEASE/build holds) in a fresh directory under dir, and
// returns the path of the .ko. It needs make and the compiler the kernel
// was built with.
func Build(ctx context.Context, kdir, dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(kdir, "Makefile")); err != nil {
		return "", fmt.Errorf("building %s: no kernel headers at %s: %w", ModuleName, kdir, err)
	}
	out, err := os.MkdirTemp(dir, "autoprof-splice-")
	if err != nil {
		return "", fmt.Errorf("building %s: %w", ModuleName, err)
	}
	if err := writeSources(out); err != nil {
		os.RemoveAll(out)
		return "", fmt.Errorf("building %s: writing its sources: %w", ModuleName, err)
	}
	cmd := exec.CommandContext(ctx, "make", "-C", kdir, "M="+out, "modules")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(out)
		return "", fmt.Errorf("building %s against %s: %w\n%s", ModuleName, kdir, err, lastLines(string(b), 20))
	}
	return filepath.Join(out, ModuleName+".ko"), nil
}

func writeSources(dir string) error {
	return fs.WalkDir(sources, "module", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sources.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Load loads the module in file ko with params. A module already loaded
// is an error wrapping kernel.EEXIST.
func Load(ko string, p Params) error {
	f, err := os.Open(ko)
	if err != nil {
		return fmt.Errorf("loading %s: %w", ModuleName, err)
	}
	defer f.Close()
	if err := kernel.FinitModule(f, p.String(), false); err != nil {
		return fmt.Errorf("loading %s (check the kernel log): %w", ModuleName, err)
	}
	return nil
}

// Unload removes the module. An open session does not hold it: the module
// withdraws the session's splices and puts back the returns its timers
// hijacked before it goes, and the session's later calls fail with
// ErrRemoved. The kernel refuses (EBUSY) only after a site was changed
// underneath (its trampoline, in the module, may still be jumped to).
func Unload() error {
	return kernel.DeleteModule(ModuleName)
}

// Loaded reports whether the module is loaded.
func Loaded() bool {
	_, err := os.Stat(filepath.Join("/sys/module", ModuleName))
	return err == nil
}

// ErrNotLoaded says the module is not loaded.
var ErrNotLoaded = errors.New(ModuleName + " is not loaded")
