// Command vmtest runs autoprof's in-VM tests on real Debian kernels.
//
//	vmtest test [-kernels 6.1,6.12] [-run RE] [-bench RE [-benchtime T]] [-v] [-short] [PACKAGES]
//	    runs `go test -tags vm` for every package with in-VM tests (files
//	    tagged vm), once per kernel series, each package in its own VM.
//	vmtest exec [-kernel SERIES] [-out DIR] [-timeout D] BINARY [ARGS]
//	    boots one VM and runs a static binary in it; `go test -exec` uses
//	    this form, and so can a person (vmtest exec bin/autoprof caps).
//
// Run as PID 1 inside the guest, the same binary is the guest's init, so
// it must be built with CGO_ENABLED=0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/autoprof/autoprof/internal/debkernel"
	"github.com/autoprof/autoprof/internal/vmtest"
	"github.com/autoprof/autoprof/internal/vmtest/guest"
)

func main() {
	if os.Getpid() == 1 {
		guest.Main()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vmtest test|exec [flags] ...")
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "exec":
		code = execMain(ctx, os.Args[2:])
	case "test":
		code = testMain(ctx, os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "vmtest: unknown mode %q (want test or exec)\n", os.Args[1])
		code = 2
	}
	os.Exit(code)
}

func execMain(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("vmtest exec", flag.ContinueOnError)
	series := fs.String("kernel", envOr("AUTOPROF_VM_KERNEL", "6.1"), "kernel series to boot")
	out := fs.String("out", "", "directory for the files the command leaves in "+vmtest.GuestOutDir)
	timeout := fs.Duration("timeout", 0, "bound on the whole run (default: the test binary's -test.timeout + 1m, else 10m)")
	memory := fs.Int("memory", 0, "guest memory in MiB")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "vmtest exec: no binary to run")
		return 2
	}
	k, err := debkernel.Fetch(ctx, *series)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest exec: %v\n", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest exec: %v\n", err)
		return 1
	}
	cwd, _ := os.Getwd()
	cfg := vmtest.Config{Kernel: k, Init: self, Output: os.Stdout, OutDir: *out, MemoryMiB: *memory}
	binArgs := fs.Args()[1:]
	cfg.Timeout = *timeout
	if cfg.Timeout == 0 {
		if t := vmtest.TestTimeout(binArgs); t > 0 {
			cfg.Timeout = t + time.Minute
		}
	}
	if err := cfg.ForBinary(fs.Arg(0), binArgs, cwd); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest exec: %v\n", err)
		return 1
	}
	_, err = vmtest.Run(ctx, cfg)
	return report(os.Stderr, k, err)
}

// report prints a failed run's reason and the guest's kernel log (or its
// console, where the log could not be read) to w, and returns the exit
// code: the guest command's own where it failed, else 1.
func report(w io.Writer, k *debkernel.Kernel, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(w, "\nvmtest: kernel %s: %v\n", k.Release, err)
	var ge *vmtest.GuestError
	if !errors.As(err, &ge) {
		return 1
	}
	if ge.Result.KernelLog != "" {
		fmt.Fprintf(w, "--- guest kernel log (%s) ---\n%s--- end of kernel log ---\n", k.Release, ge.Result.KernelLog)
	} else {
		fmt.Fprintf(w, "--- guest console (%s) ---\n%s\n--- end of console ---\n", k.Release, strings.TrimRight(ge.Result.Console, "\n"))
	}
	if ge.Result.ExitCode > 0 {
		return ge.Result.ExitCode
	}
	return 1
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
