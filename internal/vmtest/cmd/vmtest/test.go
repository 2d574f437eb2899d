package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/autoprof/autoprof/internal/debkernel"
	"github.com/autoprof/autoprof/internal/vmtest"
)

func testMain(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("vmtest test", flag.ContinueOnError)
	kernels := fs.String("kernels", strings.Join(debkernel.SeriesNames(), ","), "kernel series to test, comma-separated")
	run := fs.String("run", "", "passed to go test -run")
	verbose := fs.Bool("v", false, "print every test's output, as go test -v does (else only the failed tests')")
	short := fs.Bool("short", false, "passed to go test -short")
	bench := fs.String("bench", "", "passed to go test -bench (the tests are left out unless -run is given)")
	benchtime := fs.String("benchtime", "1x", "passed to go test -benchtime with -bench")
	timeout := fs.Duration("timeout", 20*time.Minute, "passed to go test -timeout")
	outDir := fs.String("out", "", "directory for the files the tests leave in "+vmtest.GuestOutDir+" (AUTOPROF_VM_OUT), one directory per kernel series; default: dropped")
	jobs := fs.Int("j", min(runtime.NumCPU(), 2), "kernels tested at once (each VM emulates its CPUs on one host thread); their lines are prefixed [SERIES]")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest test: %v\n", err)
		return 1
	}
	pkgs := fs.Args()
	if len(pkgs) == 0 {
		if pkgs, err = vmPackages(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "vmtest test: %v\n", err)
			return 1
		}
	}
	if len(pkgs) == 0 {
		fmt.Println("vmtest: no package has in-VM tests")
		return 0
	}
	module, err := modulePath(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest test: %v\n", err)
		return 1
	}
	series := strings.Split(*kernels, ",")
	kernelsOf := make([]*debkernel.Kernel, len(series))
	for i, name := range series { // fetched one at a time: apt locks its lists
		k, err := debkernel.Fetch(ctx, name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmtest test: %v\n", err)
			return 1
		}
		kernelsOf[i] = k
	}
	outs := make([]string, len(series)) // -out's directory for each series
	for i, name := range series {
		if *outDir == "" {
			break
		}
		dir, err := filepath.Abs(filepath.Join(*outDir, name))
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err == nil && strings.ContainsAny(dir, " \t") {
			err = errors.New("the path holds a space, which go test's -exec cannot pass on")
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmtest test: -out %s: %v\n", *outDir, err)
			return 2
		}
		outs[i] = dir
	}
	results := make([]string, len(series))
	failed := make([]bool, len(series))
	sem := make(chan struct{}, max(*jobs, 1))
	var wg sync.WaitGroup
	var outMu sync.Mutex
	for i, name := range series {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			k := kernelsOf[i]
			execCmd := self + " exec -kernel " + name
			if outs[i] != "" {
				execCmd += " -out " + outs[i]
			}
			goArgs := []string{"test", "-json", "-tags", "vm", "-count=1", "-p", "1", "-timeout", timeout.String(),
				"-exec", execCmd}
			switch {
			case *run != "":
				goArgs = append(goArgs, "-run", *run)
			case *bench != "":
				goArgs = append(goArgs, "-run", "^$")
			}
			if *bench != "" {
				goArgs = append(goArgs, "-bench", *bench, "-benchtime", *benchtime)
			}
			if *short {
				goArgs = append(goArgs, "-short")
			}
			goArgs = append(goArgs, pkgs...)
			out := &prefixWriter{prefix: "[" + name + "] ", w: os.Stdout, mu: &outMu}
			if len(series) == 1 || *jobs == 1 {
				out.prefix = ""
			}
			fmt.Fprintf(out, "=== vmtest: kernel %s (%s), %d packages\n", k.Release, k.Version, len(pkgs))
			start := time.Now()
			cmd := exec.CommandContext(ctx, "go", goArgs...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			relay := vmtest.NewRelay(out, *verbose)
			cmd.Stdout, cmd.Stderr = relay, relay
			status := "ok"
			if err := cmd.Run(); err != nil {
				failed[i] = true
				status = "FAIL"
			}
			tally, err := relay.Flush()
			if err != nil {
				fmt.Fprintf(out, "vmtest test: %v\n", err)
			}
			out.Flush()
			results[i] = summaryLine(status, k, time.Since(start), tally, module)
		}()
	}
	wg.Wait()
	fmt.Println("=== vmtest summary")
	for _, s := range results {
		fmt.Println(s)
	}
	if slices.Contains(failed, true) {
		return 1
	}
	return 0
}

// summaryLine is a kernel's line of the summary: whether its run passed,
// how long it took, the tests' counts, and then a line for each test that
// failed or skipped, with the reason.
func summaryLine(status string, k *debkernel.Kernel, took time.Duration, t *vmtest.Tally, module string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s kernel %s  %v  %s", status, k.Release, took.Round(time.Second), t)
	for _, d := range t.Details(module) {
		fmt.Fprintf(&b, "\n       %s", d)
	}
	return b.String()
}

// modulePath returns the path of the main module, which the summary cuts
// from package paths.
func modulePath(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// vmPackages lists the packages whose test files differ with the vm tag:
// those that have in-VM tests.
func vmPackages(ctx context.Context) ([]string, error) {
	list := func(tags ...string) (map[string]string, error) {
		args := append([]string{"list"}, tags...)
		args = append(args, "-f", "{{.ImportPath}} {{join .TestGoFiles \",\"}} {{join .XTestGoFiles \",\"}}", "./...")
		out, err := exec.CommandContext(ctx, "go", args...).Output()
		if err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		m := map[string]string{}
		for _, line := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
			pkg, files, _ := strings.Cut(line, " ")
			m[pkg] = files
		}
		return m, nil
	}
	plain, err := list()
	if err != nil {
		return nil, err
	}
	tagged, err := list("-tags", "vm")
	if err != nil {
		return nil, err
	}
	var pkgs []string
	for pkg, files := range tagged {
		if files != plain[pkg] {
			pkgs = append(pkgs, pkg)
		}
	}
	sort.Strings(pkgs)
	return pkgs, nil
}

// prefixWriter writes whole lines to w, each with prefix, under mu, so
// that the lines of kernels tested at once do not interleave mid-line.
type prefixWriter struct {
	prefix string
	w      io.Writer
	mu     *sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		_, err := fmt.Fprintf(p.w, "%s%s", p.prefix, p.buf[:i+1])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
}

// Flush writes what is left of a last line without its newline.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.Write([]byte("\n"))
	}
}
