//go:build !vm

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/autoprof/autoprof"

// pure lists the packages that read and write runs and plan hunts: they
// must link nothing that reaches into a kernel, so that report and diff
// run on any machine.
var pure = []string{module + "/search", module + "/search/searchtest", module + "/reports/...", module + "/internal/instrument", module + "/callgraph"}

// goCmd runs the go command with env added to the test's own.
func goCmd(t *testing.T, env []string, args ...string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	cmd := exec.Command(gobin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPureDeps: the pure packages import no BPF library, no
// golang.org/x/sys/unix and no package of kmod (the module loader and
// the BPF programs).
func TestPureDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping go list")
	}
	deps := goCmd(t, nil, append([]string{"list", "-deps"}, pure...)...)
	var bad []string
	for _, dep := range strings.Fields(deps) {
		if strings.HasPrefix(dep, "github.com/cilium/ebpf") || dep == "golang.org/x/sys/unix" || strings.HasPrefix(dep, module+"/kmod") {
			bad = append(bad, dep)
		}
	}
	if len(bad) > 0 {
		t.Errorf("go list -deps %s lists %s", strings.Join(pure, " "), strings.Join(bad, ", "))
	}
	// The search and the renderers read no kernel image either: no
	// decompressor of vmlinuz, no decoder.
	renderers := []string{module + "/search", module + "/reports/..."}
	bad = nil
	for _, dep := range strings.Fields(goCmd(t, nil, append([]string{"list", "-deps"}, renderers...)...)) {
		if strings.HasPrefix(dep, "github.com/ulikunitz/xz") || strings.HasPrefix(dep, "github.com/klauspost/compress") || dep == module+"/callgraph" {
			bad = append(bad, dep)
		}
	}
	if len(bad) > 0 {
		t.Errorf("go list -deps %s lists %s", strings.Join(renderers, " "), strings.Join(bad, ", "))
	}
}

// TestBuildsOnDarwin: the pure packages and the command, whose report and
// diff read saved runs on a laptop, build for macOS on both of its
// architectures, and so do the trees of search and reports (search/live,
// a hunt on the running kernel, is Linux's alone).
func TestBuildsOnDarwin(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the cross builds")
	}
	for _, arch := range []string{"amd64", "arm64"} {
		goCmd(t, []string{"GOOS=darwin", "GOARCH=" + arch, "CGO_ENABLED=0"}, append([]string{"build", module + "/cmd/autoprof", module + "/search/...", module + "/reports/..."}, pure...)...)
	}
}
