package guest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/autoprof/autoprof/internal/kernel"
)

// mounts are the file systems a test expects, in order.
var mounts = []struct{ source, target, fstype, data string }{
	{"proc", "/proc", "proc", ""},
	{"sysfs", "/sys", "sysfs", ""},
	{"devtmpfs", "/dev", "devtmpfs", ""},
	{"tmpfs", "/tmp", "tmpfs", ""},
	{"tmpfs", "/run", "tmpfs", ""},
	{"tracefs", "/sys/kernel/tracing", "tracefs", ""},
	{"debugfs", "/sys/kernel/debug", "debugfs", ""},
	{"securityfs", "/sys/kernel/security", "securityfs", ""},
	{"bpf", "/sys/fs/bpf", "bpf", ""},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", ""},
}

// Main is the guest's init. It never returns: it powers the machine off.
func Main() {
	out := setup()
	code, runErr := run(out)
	report(out, code, runErr)
	out.Close()
	kernel.PowerOff()
	select {}
}

// setup mounts the file systems and opens the output port; where the
// output port cannot be opened, the console has to do.
func setup() *os.File {
	var errs []string
	for _, m := range mounts {
		if err := kernel.Mount(m.source, m.target, m.fstype, m.data); err != nil {
			errs = append(errs, err.Error())
		}
	}
	out, err := os.OpenFile(OutputTTY, os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: opening %s: %v\n", OutputTTY, err)
		out = os.Stdout
	} else if err := kernel.MakeRaw(out); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: %v\n", err)
	}
	for _, e := range errs {
		fmt.Fprintf(os.Stderr, "vmtest init: %s\n", e)
	}
	kernel.LinkUp("lo")
	kernel.SetMemlockInfinity()
	os.MkdirAll(OutDir, 0o755)
	return out
}

// run loads the modules and runs the command, returning its exit code.
func run(out *os.File) (int, error) {
	b, err := os.ReadFile(ConfigPath)
	if err != nil {
		return -1, err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return -1, fmt.Errorf("parsing %s: %w", ConfigPath, err)
	}
	if len(cfg.Args) == 0 {
		return -1, errors.New("no command to run")
	}
	for _, m := range cfg.Modules {
		if err := loadModule(m); err != nil {
			return -1, err
		}
	}
	if cfg.Network {
		if err := kernel.SetIPv4("eth0", GuestIP, 24); err != nil {
			return -1, err
		}
		if err := kernel.LinkUp("eth0"); err != nil {
			return -1, err
		}
	}
	cmd := exec.Command(cfg.Args[0], cfg.Args[1:]...)
	cmd.Dir = cfg.Dir
	cmd.Env = append([]string{
		"PATH=/vmtest/bin:/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp",
		VMEnv + "=1", "AUTOPROF_VM_OUT=" + OutDir,
	}, cfg.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	compressed := strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz")
	if err := kernel.FinitModule(f, "", compressed); err != nil && !errors.Is(err, kernel.EEXIST) {
		return err
	}
	return nil
}

// report writes the protocol lines that end a run.
func report(out io.Writer, code int, runErr error) {
	fmt.Fprintln(out)
	if runErr != nil {
		fmt.Fprintf(out, "%s%s %s\n", Marker, LineError, strings.ReplaceAll(runErr.Error(), "\n", " "))
	}
	tainted, _ := os.ReadFile("/proc/sys/kernel/tainted")
	fmt.Fprintf(out, "%s%s %d %s\n", Marker, LineStatus, code, strings.TrimSpace(string(tainted)))
	writeBlob(out, LineKmsg, readKmsg())
	archive, err := tarDir(OutDir)
	if err != nil {
		fmt.Fprintf(out, "%s%s archiving %s: %v\n", Marker, LineError, OutDir, err)
	}
	writeBlob(out, LineOut, archive)
	fmt.Fprintf(out, "%s%s\n", Marker, LineEnd)
}

func writeBlob(out io.Writer, kind string, b []byte) {
	fmt.Fprintf(out, "%s%s %d\n", Marker, kind, len(b))
	out.Write(b)
}

// readKmsg returns the whole kernel log as "[seconds] message" lines. It
// reads /dev/kmsg, which holds every level, whatever the console prints.
func readKmsg() []byte {
	var b bytes.Buffer
	err := kernel.ReadRecords("/dev/kmsg", func(rec []byte) {
		b.WriteString(formatKmsgRecord(string(rec)))
	})
	if err != nil {
		b.WriteString(err.Error() + "\n")
	}
	return b.Bytes()
}

// formatKmsgRecord turns "6,339,5140900,-;message\n" into "[    5.140900] message\n".
func formatKmsgRecord(rec string) string {
	head, msg, ok := strings.Cut(rec, ";")
	if !ok {
		return rec
	}
	// Continuation lines (" KEY=value") carry dictionary data; drop them.
	msg, _, _ = strings.Cut(msg, "\n ")
	msg = strings.TrimSuffix(msg, "\n")
	fields := strings.Split(head, ",")
	if len(fields) < 3 {
		return msg + "\n"
	}
	us, _ := strconv.ParseUint(fields[2], 10, 64)
	return fmt.Sprintf("[%5d.%06d] %s\n", us/1e6, us%1e6, msg)
}

// tarDir archives the regular files under dir, with paths relative to it.
func tarDir(dir string) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
