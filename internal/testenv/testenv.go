// Package testenv prepares a test binary's process for tests that count
// its system calls exactly.
package testenv

import (
	"os"
	"strings"
	"syscall"
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
