// Package selftest holds the in-VM tests that the harness's own tests run:
// one that passes, one that fails, one that panics the guest kernel and
// one that hangs. It lives under testdata so that go test ./... skips it.
package selftest

import (
	"fmt"
	"net"
	"net/http"
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

// TestServe answers one request on port 8080 (forwarded from the host)
// and returns.
func TestServe(t *testing.T) {
	l, err := net.Listen("tcp", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the guest")
		close(served)
	}))
	select {
	case <-served:
		time.Sleep(100 * time.Millisecond) // let the answer go out
	case <-time.After(2 * time.Minute):
		t.Fatal("no request came through the forwarded port")
	}
}
