package features

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/kmod/splicer"
)

var spliceProbe = newProbe(probeSplice)

// HaveSplice reports whether autoprof's own splicing module
// (kmod/splicer) can be loaded and used here, and otherwise names exactly
// what is missing:
//
//   - an x86-64 kernel that loads modules (CONFIG_MODULES, and not
//     disabled by kernel.modules_disabled), and CAP_SYS_MODULE;
//   - one that accepts an unsigned module: no signature enforcement
//     (CONFIG_MODULE_SIG_FORCE, module.sig_enforce) and no lockdown, which
//     refuses unsigned modules from integrity up;
//   - the kernel internals the module reaches through addresses the loader
//     passes in (text_poke, text_mutex, search_exception_tables,
//     vmlinux_build_id), visible in /proc/kallsyms: text_mutex and
//     vmlinux_build_id are data, listed only with CONFIG_KALLSYMS_ALL;
//   - the kernel's build id in /sys/kernel/notes, which the module checks;
//   - the module itself: loaded already, built (named by
//     $AUTOPROF_SPLICE_MODULE), or buildable from the kernel's headers
//     (/lib/modules/RELEASE/build) with make and the compiler the kernel
//     was built with.
//
// The load check hands the kernel a file that is not a module: the kernel
// checks permission, then the signature, then the ELF, so its errno says
// how far a real module would get, and nothing is loaded.
func HaveSplice() error { return spliceProbe.result() }

func probeSplice() error {
	s := ReadSystem()
	steps := []func(*System) string{
		spliceArch, spliceModules, spliceLoadable, spliceSymbols, spliceIdentity, spliceSource,
	}
	for _, step := range steps {
		if reason := step(s); reason != "" {
			return &Unavailable{Feature: "splice", Reason: reason}
		}
	}
	return nil
}

func spliceArch(*System) string {
	if runtime.GOARCH != "amd64" {
		return "the splice module patches x86-64 code only, this is " + runtime.GOARCH
	}
	return ""
}

func spliceModules(s *System) string {
	if _, err := os.Stat("/proc/modules"); err != nil {
		return "CONFIG_MODULES is not set (the kernel cannot load modules)"
	}
	if readInt("/proc/sys/kernel/modules_disabled", 0) == 1 {
		return "module loading is disabled (kernel.modules_disabled = 1)"
	}
	if !s.Caps["CAP_SYS_MODULE"] {
		return "missing capability CAP_SYS_MODULE (run as root)"
	}
	return ""
}

// spliceLoadable offers the kernel a file that is not a module.
func spliceLoadable(s *System) string {
	if splicer.Loaded() {
		return ""
	}
	if err := tryLoadNotAModule(); err != nil {
		return moduleRefusal(s, err)
	}
	return ""
}

// tryLoadNotAModule offers the kernel a file that is not a module. ENOEXEC
// (not an ELF module) means a real unsigned module would have been read.
func tryLoadNotAModule() error {
	f, err := kernel.MemFile("autoprof-probe", []byte("autoprof: this is not a kernel module\n"))
	if err != nil {
		return err
	}
	defer f.Close()
	err = kernel.FinitModule(f, "", false)
	if err == nil || errors.Is(err, kernel.ENOEXEC) || errors.Is(err, kernel.EINVAL) {
		return nil
	}
	return err
}

func moduleRefusal(s *System, err error) string {
	switch {
	case errors.Is(err, kernel.ENOSYS):
		return "CONFIG_MODULES is not set (finit_module: ENOSYS)"
	case errors.Is(err, kernel.EKEYREJECTED):
		return "the kernel enforces module signatures (CONFIG_MODULE_SIG_FORCE or module.sig_enforce) and autoprof's module is unsigned"
	case errors.Is(err, kernel.EPERM) && (s.Lockdown == "integrity" || s.Lockdown == "confidentiality"):
		return "lockdown is " + s.Lockdown + ", which refuses unsigned modules"
	case errors.Is(err, kernel.EPERM):
		return "the kernel refused to load a module (EPERM)" + refusalContext(s)
	}
	return fmt.Sprintf("loading a module: %v", err)
}

// spliceInternals are the symbols the module needs, and whether each is
// data (listed in kallsyms only with CONFIG_KALLSYMS_ALL).
var spliceInternals = map[string]bool{
	"text_poke": false, "search_exception_tables": false,
	"text_mutex": true, "vmlinux_build_id": true,
}

func spliceSymbols(s *System) string {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return fmt.Sprintf("cannot read /proc/kallsyms for the addresses the module needs: %v", err)
	}
	defer f.Close()
	return missingInternals(f, s)
}

// missingInternals scans a kallsyms listing for the module's internals.
func missingInternals(r io.Reader, s *System) string {
	found := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		if _, ok := spliceInternals[fields[2]]; ok {
			if strings.Trim(fields[0], "0") == "" {
				return "/proc/kallsyms hides addresses (kptr_restrict, or not root): the module needs the address of " + fields[2]
			}
			found[fields[2]] = true
		}
	}
	for name, data := range spliceInternals {
		if found[name] {
			continue
		}
		if data && s.configOff("CONFIG_KALLSYMS_ALL") {
			return fmt.Sprintf("CONFIG_KALLSYMS_ALL is not set: kallsyms does not list %s, which the module needs", name)
		}
		return fmt.Sprintf("the kernel has no symbol %s in kallsyms, which the module needs", name)
	}
	return ""
}

func spliceIdentity(*System) string {
	if _, err := splicer.RunningIdentity(); err != nil {
		return fmt.Sprintf("no build id of the running kernel, which the module checks: %v", err)
	}
	return ""
}

// spliceSource finds the module: loaded, built, or buildable here.
func spliceSource(s *System) string {
	if splicer.Loaded() {
		return ""
	}
	if ko := os.Getenv(splicer.ModuleEnv); ko != "" {
		if _, err := os.Stat(ko); err != nil {
			return fmt.Sprintf("$%s names %s: %v", splicer.ModuleEnv, ko, err)
		}
		return ""
	}
	build := filepath.Join("/lib/modules", s.Release, "build")
	if _, err := os.Stat(filepath.Join(build, "Makefile")); err != nil {
		return fmt.Sprintf("no kernel headers at %s to build the module against (install linux-headers-%s, or name a built module in $%s)",
			build, s.Release, splicer.ModuleEnv)
	}
	if _, err := exec.LookPath("make"); err != nil {
		return "make is not installed, and the module is built with it"
	}
	if cc := kernelCompiler(build); cc != "" {
		if _, err := exec.LookPath(cc); err != nil {
			return fmt.Sprintf("%s, the compiler the kernel was built with, is not installed: the module must be built with it", cc)
		}
	}
	return ""
}

// kernelCompiler returns the compiler named by the headers' configuration
// (CONFIG_CC_VERSION_TEXT="gcc-12 (Debian ...) 12.2.0"), or "".
func kernelCompiler(build string) string {
	b, err := os.ReadFile(filepath.Join(build, "include", "config", "auto.conf"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CONFIG_CC_VERSION_TEXT=\""); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}
