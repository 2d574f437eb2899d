// Package vmtest boots a real Debian kernel in QEMU (TCG) with an initramfs
// holding static binaries, runs one command in it as root, streams the
// command's output back, and turns everything that can go wrong in the
// guest into an error on the host: a non-zero exit, a kernel oops, WARN,
// BUG or panic, a soft lockup, or a hang (timeout).
//
// The guest's init is package guest; cmd/vmtest drives it for `go test
// -exec` and for `make vmtest`, which runs the tests of every package that
// has in-VM tests (files tagged vm) against each kernel series.
package vmtest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/debkernel"
	"github.com/autoprof/autoprof/internal/vmtest/guest"
)

// Config says what to boot and what to run.
type Config struct {
	Kernel *debkernel.Kernel
	// Init is the host path of a static binary that calls guest.Main
	// when it runs as PID 1 (cmd/vmtest is one).
	Init string
	// Root holds the files the command needs; Init and the guest config
	// are added to it.
	Root  *Initramfs
	Guest guest.Config
	// Modules names kernel modules of Kernel to load before the command
	// ("loop"); their dependencies are loaded too.
	Modules []string
	// MemoryMiB and CPUs size the machine (default 1536 MiB, 2 CPUs).
	MemoryMiB, CPUs int
	// Timeout bounds the whole run, boot included (default 10 minutes).
	Timeout time.Duration
	// Output receives the command's stdout and stderr as they come.
	Output io.Writer
	// OutDir receives the files the command left in guest.OutDir; "" drops them.
	OutDir string
	// KernelArgs are added to the kernel command line.
	KernelArgs []string
	// Forward gives the guest a network card on QEMU's user network,
	// restricted (the guest reaches nothing outside), and forwards each
	// host port (on 127.0.0.1) to its guest port, for a browser on the
	// host to reach a server in the guest.
	Forward []Forward
}

// Forward is a TCP port of 127.0.0.1 on the host forwarded to one of the
// guest.
type Forward struct {
	Host, Guest int
}

// Result is how a run ended.
type Result struct {
	ExitCode  int
	Tainted   uint64
	Console   string // everything the kernel printed on the console (ttyS0)
	KernelLog string // the full kernel log, read from /dev/kmsg at the end
	Elapsed   time.Duration
}

// GuestError is a failed run: Reason says what went wrong; Result holds the
// console and kernel log to show.
type GuestError struct {
	Reason string
	Result *Result
}

func (e *GuestError) Error() string { return e.Reason }

// Run boots the kernel, runs the command and waits for the guest to power
// off. It returns a *GuestError when the command failed or the kernel
// reported a problem; other errors mean the VM could not be started.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	dir, err := os.MkdirTemp("", "autoprof-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	initrd, err := cfg.writeInitramfs(dir)
	if err != nil {
		return nil, fmt.Errorf("building the initramfs: %w", err)
	}
	console := filepath.Join(dir, "console.log")
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", cfg.qemuArgs(initrd, console)...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var qemuErr bytes.Buffer
	cmd.Stderr = &qemuErr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting qemu-system-x86_64 (apt-get install qemu-system-x86): %w", err)
	}
	proto, readErr := readProtocol(stdout, cfg.Output)
	waitErr := cmd.Wait()
	res := &Result{ExitCode: -1, Elapsed: time.Since(start), KernelLog: string(proto.kmsg)}
	b, _ := os.ReadFile(console)
	res.Console = string(b)
	if ctx.Err() != nil {
		return res, &GuestError{Reason: fmt.Sprintf("guest timed out after %v (hang?)", cfg.Timeout), Result: res}
	}
	if readErr != nil {
		return res, fmt.Errorf("reading the guest's output: %w", readErr)
	}
	if !proto.ended {
		reason := "guest stopped before the command finished"
		if p := firstProblem(res.Console); p != "" {
			reason += ": " + p
		}
		if waitErr != nil {
			reason += fmt.Sprintf(" (qemu: %v %s)", waitErr, strings.TrimSpace(qemuErr.String()))
		}
		return res, &GuestError{Reason: reason, Result: res}
	}
	res.ExitCode, res.Tainted = proto.exitCode, proto.tainted
	if err := extractTar(proto.out, cfg.OutDir); err != nil {
		return res, fmt.Errorf("unpacking the guest's output files: %w", err)
	}
	return res, judge(res, proto.guestErr)
}

func (cfg *Config) defaults() {
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 1536
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	if cfg.Root == nil {
		cfg.Root = NewInitramfs()
	}
}

func (cfg *Config) writeInitramfs(dir string) (string, error) {
	if err := checkStatic(cfg.Init); err != nil {
		return "", err
	}
	if err := cfg.Root.AddFile("init", cfg.Init); err != nil {
		return "", err
	}
	modules := cfg.Modules
	if len(cfg.Forward) > 0 {
		modules = append(modules, "virtio_pci", "virtio_net") // built in on some kernels: skipped there
	}
	mods, err := addModules(cfg.Root, cfg.Kernel.ModulesDir, cfg.Kernel.Release, modules)
	if err != nil {
		return "", err
	}
	g := cfg.Guest
	g.Modules = append(mods, g.Modules...)
	g.Network = len(cfg.Forward) > 0
	js, err := json.Marshal(g)
	if err != nil {
		return "", err
	}
	cfg.Root.AddBytes(guest.ConfigPath, js, 0o644)
	path := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := cfg.Root.WriteTo(w); err != nil {
		f.Close()
		return "", err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

func (cfg *Config) qemuArgs(initrd, console string) []string {
	appendLine := append([]string{
		"console=ttyS0", "panic=-1", "loglevel=5",
		// TCG runs slowly: give the hung-task detector and the clocksource
		// watchdog room, so that emulation speed is not reported as a hang.
		"hung_task_timeout_secs=600", "tsc=reliable",
	}, cfg.KernelArgs...)
	args := []string{
		"-machine", "q35", "-cpu", "max", "-accel", "tcg,thread=" + tcgThreads(),
		"-m", strconv.Itoa(cfg.MemoryMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-display", "none", "-vga", "none", "-monitor", "none", "-no-reboot", "-nodefaults",
		"-kernel", cfg.Kernel.Vmlinuz, "-initrd", initrd,
		"-append", strings.Join(appendLine, " "),
		"-chardev", "file,id=console,path=" + console,
		"-serial", "chardev:console",
		"-chardev", "stdio,id=output,signal=off",
		"-serial", "chardev:output",
	}
	if len(cfg.Forward) > 0 {
		netdev := "user,id=net0,restrict=on"
		for _, f := range cfg.Forward {
			netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.Host, f.Guest)
		}
		// No option ROM: the guest boots by -kernel, not from the network.
		args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,romfile=")
	}
	return args
}

// tcgThreads chooses QEMU's TCG threading: "single" (one host thread runs
// every vCPU in turn) unless AUTOPROF_VM_TCG=multi. Multi-threaded TCG has
// been seen to run a stale int3 after the guest kernel's own text_poke_bp
// had replaced it (an "Oops: int3" while the 6.12 kernel flipped a
// tracepoint's static key): a cross-modifying-code race in the emulator,
// not in the guest, and fatal to tests of code patching. Single-threaded
// TCG still interleaves the vCPUs, so concurrent guest code is exercised.
func tcgThreads() string {
	if os.Getenv("AUTOPROF_VM_TCG") == "multi" {
		return "multi"
	}
	return "single"
}

// protocol is what the guest's init reported.
type protocol struct {
	ended     bool
	exitCode  int
	tainted   uint64
	guestErr  string
	kmsg, out []byte
}

// readProtocol copies the command's output to w until the first marker
// line, then reads the protocol lines and blobs.
func readProtocol(r io.Reader, w io.Writer) (protocol, error) {
	var p protocol
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		rest, isMarker := strings.CutPrefix(line, guest.Marker)
		if !isMarker {
			io.WriteString(w, line)
		} else if perr := p.handle(strings.TrimSuffix(rest, "\n"), br); perr != nil {
			return p, perr
		}
		if p.ended {
			return p, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return p, nil
			}
			return p, err
		}
	}
}

func (p *protocol) handle(line string, br *bufio.Reader) error {
	kind, args, _ := strings.Cut(line, " ")
	switch kind {
	case guest.LineStatus:
		f := strings.Fields(args)
		if len(f) != 2 {
			return fmt.Errorf("bad status line %q", line)
		}
		p.exitCode, _ = strconv.Atoi(f[0])
		p.tainted, _ = strconv.ParseUint(f[1], 10, 64)
	case guest.LineError:
		p.guestErr = args
	case guest.LineKmsg, guest.LineOut:
		n, err := strconv.Atoi(args)
		if err != nil || n < 0 {
			return fmt.Errorf("bad blob line %q", line)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return fmt.Errorf("reading %d bytes of %s: %w", n, kind, err)
		}
		if kind == guest.LineKmsg {
			p.kmsg = b
		} else {
			p.out = b
		}
	case guest.LineEnd:
		p.ended = true
	}
	return nil
}

// judge fails a run whose command failed or whose kernel reported a problem.
func judge(res *Result, guestErr string) error {
	switch {
	case guestErr != "":
		return &GuestError{Reason: "guest could not run the command: " + guestErr, Result: res}
	case res.Tainted&guest.FailingTaints != 0:
		reason := fmt.Sprintf("guest kernel tainted %s", describeTaint(res.Tainted))
		if p := firstProblem(res.KernelLog); p != "" {
			reason += ": " + p
		}
		return &GuestError{Reason: reason, Result: res}
	}
	if p := firstProblem(res.KernelLog); p != "" {
		return &GuestError{Reason: "guest kernel reported a problem: " + p, Result: res}
	}
	if p := firstProblem(res.Console); p != "" {
		return &GuestError{Reason: "guest kernel reported a problem: " + p, Result: res}
	}
	if res.ExitCode != 0 {
		return &GuestError{Reason: fmt.Sprintf("guest command exited with status %d", res.ExitCode), Result: res}
	}
	return nil
}

func extractTar(b []byte, dir string) error {
	if len(b) == 0 || dir == "" {
		return nil
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || strings.HasPrefix(name, "..") {
			return fmt.Errorf("guest file %q escapes the output directory", h.Name)
		}
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
}
