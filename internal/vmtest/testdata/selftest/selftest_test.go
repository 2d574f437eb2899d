// Package selftest holds the in-VM tests that the harness's own tests run:
// one that passes, one that fails, one that panics the guest kernel and
// one that hangs. It lives under testdata so that go test ./... skips it.
package selftest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPass(t *testing.T) {
	if os.Getenv("AUTOPROF_VM") != "1" {
		t.Fatal("not running in the VM: AUTOPROF_VM is not set")
	}
	if _, err := os.Stat("/proc/kallsyms"); err != nil {
		t.Fatal(err)
	}
	// Leave a file for the host.
	if err := os.WriteFile(filepath.Join(os.Getenv("AUTOPROF_VM_OUT"), "hello.txt"), []byte("hello from the guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("selftest: pass")
}

func TestDeliberateFailure(t *testing.T) {
	t.Fatal("selftest: this test fails on purpose")
}

func TestGuestPanic(t *testing.T) {
	// sysrq 'c' crashes the kernel (a NULL dereference, then panic).
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute)
	t.Fatal("the kernel survived sysrq-c")
}

func TestGuestHang(t *testing.T) {
	time.Sleep(time.Hour) // a hang the Go runtime does not detect as a deadlock
}
