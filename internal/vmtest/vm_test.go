package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/testenv"
)

// selftest builds the VM's init and the selftest test binary once.
var selftest = sync.OnceValues(func() (dir string, err error) {
	dir, err = os.MkdirTemp("", "vmtest-selftest-")
	if err != nil {
		return "", err
	}
	for _, build := range [][]string{
		{"build", "-o", filepath.Join(dir, "init"), "./cmd/vmtest"},
		{"test", "-c", "-o", filepath.Join(dir, "selftest.test"), "./testdata/selftest"},
	} {
		cmd := exec.Command("go", build...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", errors.New(string(out))
		}
	}
	return dir, nil
})

// runSelftest boots the 6.1 kernel and runs one selftest test in it.
func runSelftest(t *testing.T, test string, timeout time.Duration) (*Result, string, error) {
	t.Helper()
	return runSelftestWith(t, test, timeout, nil)
}

// runSelftestWith is runSelftest with ports forwarded.
func runSelftestWith(t *testing.T, test string, timeout time.Duration, forward []Forward) (*Result, string, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM: not in -short mode")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	k := testenv.DebianKernel(t, context.Background(), "6.1")
	dir, err := selftest()
	if err != nil {
		t.Fatalf("building the selftest binaries: %v", err)
	}
	var out bytes.Buffer
	cfg := Config{Kernel: k, Init: filepath.Join(dir, "init"), Output: &out, Timeout: timeout, OutDir: t.TempDir(), Forward: forward}
	if err := cfg.ForBinary(filepath.Join(dir, "selftest.test"), []string{"-test.v", "-test.run=^" + test + "$"}, "testdata/selftest"); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg)
	if res != nil {
		t.Logf("%s: exit %d, tainted %d, %v", test, res.ExitCode, res.Tainted, res.Elapsed.Round(time.Millisecond))
	}
	return res, cfg.OutDir + "\x00" + out.String(), err
}

func TestPassingGuest(t *testing.T) {
	res, outs, err := runSelftest(t, "TestPass", 3*time.Minute)
	if err != nil {
		t.Fatalf("a passing in-VM test failed the run: %v", err)
	}
	outDir, output, _ := strings.Cut(outs, "\x00")
	if !strings.Contains(output, "selftest: pass") || !strings.Contains(output, "PASS") {
		t.Errorf("guest output lacks the test's log:\n%s", output)
	}
	if res.ExitCode != 0 {
		t.Errorf("exit code %d", res.ExitCode)
	}
	if !strings.Contains(res.KernelLog, "Linux version") {
		t.Errorf("the kernel log read from /dev/kmsg lacks the banner:\n%.500s", res.KernelLog)
	}
	b, err := os.ReadFile(filepath.Join(outDir, "hello.txt"))
	if err != nil || string(b) != "hello from the guest\n" {
		t.Errorf("file left by the guest: %q, %v", b, err)
	}
}

func TestFailingGuestTest(t *testing.T) {
	res, outs, err := runSelftest(t, "TestDeliberateFailure", 3*time.Minute)
	var ge *GuestError
	if !errors.As(err, &ge) {
		t.Fatalf("a failing in-VM test gave err = %v, want a GuestError", err)
	}
	if !strings.Contains(ge.Error(), "exited with status 1") {
		t.Errorf("reason %q does not give the exit status", ge.Error())
	}
	if res.ExitCode != 1 || !strings.Contains(outs, "this test fails on purpose") {
		t.Errorf("exit %d, output:\n%s", res.ExitCode, outs)
	}
	if !strings.Contains(ge.Result.KernelLog, "Linux version") {
		t.Error("the failure carries no kernel log to show")
	}
}

func TestGuestKernelPanic(t *testing.T) {
	_, _, err := runSelftest(t, "TestGuestPanic", 3*time.Minute)
	var ge *GuestError
	if !errors.As(err, &ge) {
		t.Fatalf("a guest panic gave err = %v, want a GuestError", err)
	}
	if !strings.Contains(ge.Error(), "Kernel panic") && !strings.Contains(ge.Error(), "BUG:") && !strings.Contains(ge.Error(), "Oops") {
		t.Errorf("reason %q does not name the panic", ge.Error())
	}
	if !strings.Contains(ge.Result.Console, "sysrq: Trigger a crash") {
		t.Errorf("console log lacks the crash:\n%s", ge.Result.Console)
	}
}

func TestGuestHangTimesOut(t *testing.T) {
	// Long enough for the guest to print its boot on a loaded host (30 s
	// left the console empty under -race beside two TCG guests).
	const timeout = 90 * time.Second
	start := time.Now()
	_, _, err := runSelftest(t, "TestGuestHang", timeout)
	var ge *GuestError
	if !errors.As(err, &ge) || !strings.Contains(ge.Error(), "timed out") {
		t.Fatalf("a hanging guest gave err = %v, want a timeout GuestError", err)
	}
	if d := time.Since(start); d > timeout+2*time.Minute {
		t.Errorf("the hang was noticed only after %v", d)
	}
	if !strings.Contains(ge.Result.Console, "Linux version") && !strings.Contains(ge.Result.Console, "Run /init") && ge.Result.Console == "" {
		t.Error("a timeout carries no console log")
	}
}

// TestForwardedPort: a server in the guest answers a request the host
// sends to the forwarded port.
func TestForwardedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	got := make(chan string, 1)
	go func() {
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got <- string(b)
			return
		}
		got <- ""
	}()
	_, outs, err := runSelftestWith(t, "TestServe", 4*time.Minute, []Forward{{Host: port, Guest: 8080}})
	if err != nil {
		t.Fatalf("%v\n%s", err, outs)
	}
	if b := <-got; b != "hello from the guest" {
		t.Errorf("the forwarded port answered %q", b)
	}
}
