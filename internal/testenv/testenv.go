// Package testenv prepares a test binary's process for tests that count
// its system calls exactly.
package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/autoprof/autoprof/internal/kernel"
)

// NoAsyncPreempt re-executes the running test binary with the Go
// runtime's asynchronous preemption off, unless it is off already. The
// runtime preempts a goroutine by signalling its thread with
// tgkill(getpid(), tid, SIGURG), the more often the slower the machine
// (under TCG, or beside another VM), so a test that counts this process's
// getpid calls exactly would count the runtime's too. Call it first in
// TestMain; it returns an error only where the exec failed.
func NoAsyncPreempt() error {
	const setting = "asyncpreemptoff=1"
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, setting) {
		return nil
	}
	if godebug != "" {
		godebug += ","
	}
	env := append(os.Environ(), "GODEBUG="+godebug+setting)
	return syscall.Exec("/proc/self/exe", os.Args, env)
}

// VMOut returns the directory for files a test leaves for the host, by
// kernel release: AUTOPROF_VM_OUT/PREFIX-RELEASE, made if missing
// (vmtest test -out brings AUTOPROF_VM_OUT back). ok is false where
// AUTOPROF_VM_OUT is not set (not in the test VM).
func VMOut(tb testing.TB, prefix string) (dir string, ok bool) {
	tb.Helper()
	base := os.Getenv("AUTOPROF_VM_OUT")
	if base == "" {
		return "", false
	}
	rel, err := kernel.Release()
	if err != nil {
		tb.Fatal(err)
	}
	dir = filepath.Join(base, prefix+"-"+rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir, true
}
