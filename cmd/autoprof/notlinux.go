//go:build !linux

package main

import (
	"fmt"
	"io"
	"runtime"
)

// The commands that measure a kernel need Linux. Elsewhere autoprof reads
// saved runs (report, diff) and kernel images (syms, disasm, callees and
// callers with --vmlinuz).

func runHunt([]string, io.Writer, io.Writer) error  { return needsLinux("hunt") }
func runCaps([]string, io.Writer) error             { return needsLinux("caps") }
func runProbe([]string, io.Writer, io.Writer) error { return needsLinux("probe") }
func runUI([]string, io.Writer) error               { return needsLinux("ui") }

func needsLinux(command string) error {
	return fmt.Errorf("%s measures a running Linux kernel; this autoprof is built for %s", command, runtime.GOOS)
}
