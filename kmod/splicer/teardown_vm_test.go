//go:build vm

package splicer

// The tests in this file leave the VM changed for good, so they run last:
// Go runs a package's tests in the order of its files' names and of the
// tests in them. TestVMBrokenSite leaves the module pinned (a site changed
// underneath it), TestVMLockdown locks the kernel down.

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/kernel"
)

const tracefs = "/sys/kernel/tracing"

// kprobeAt registers a kprobe through tracefs at addr, enabled, and
// returns its removal. A test plays the other patcher here: autoprof
// itself never writes kprobe_events (SAFETY 17).
func kprobeAt(t *testing.T, addr uint64) func() {
	t.Helper()
	write := func(file, s string) error {
		f, err := os.OpenFile(tracefs+"/"+file, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString(s + "\n")
		return err
	}
	if err := write("kprobe_events", fmt.Sprintf("p:autoprof_test/broken 0x%x", addr)); err != nil {
		t.Fatalf("registering a kprobe at %#x: %v", addr, err)
	}
	if err := write("events/autoprof_test/broken/enable", "1"); err != nil {
		t.Fatalf("enabling the kprobe at %#x: %v", addr, err)
	}
	return func() {
		write("events/autoprof_test/broken/enable", "0")
		if err := write("kprobe_events", "-:autoprof_test/broken"); err != nil {
			t.Errorf("removing the kprobe: %v", err)
		}
	}
}

// TestVMBrokenSite (issue 14, defect 9): a site whose jump another patcher
// changed is left alone, with its trampoline, for good; the trampoline
// goes on counting for its instrument of the session that ended. A counter
// of the next session must not get those counts. Before, ids restarted at
// 1 in each session, and the new counter with the broken one's id read the
// broken one's counter slot: every getpid.
func TestVMBrokenSite(t *testing.T) {
	e := newEnv(t)
	p, err := NewParams(e.id, e.g.Symbols())
	if err != nil {
		t.Fatal(err)
	}
	if err := Load(builtFile(e.id, ModuleName+".ko"), p); err != nil {
		t.Fatal(err)
	}
	// Not unloaded: the broken site pins it (see the top of this file).
	a := e.open(t, 5*time.Second, 1)
	w := e.blockWindows(t, "__x64_sys_getpid", 1)[0]
	old := e.insert(t, a, e.request(w, InstReq{Kind: Count}))[0].Insts[0].ID
	remove := kprobeAt(t, w.Addr())
	// The dead-man work checks every live site four times a second.
	deadline := time.Now().Add(5 * time.Second)
	for {
		insts, _, err := a.Instruments([]uint32{old})
		if err != nil {
			t.Fatal(err)
		}
		if insts[0].State == Broken {
			break
		}
		if time.Now().After(deadline) {
			remove()
			t.Fatalf("a kprobe on the site's jump: the counter is still %s", insts[0].State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	remove()
	a.Close()

	b := e.open(t, 5*time.Second, 1)
	idle := e.blockWindows(t, "__x64_sys_getppid", 1)[0] // nothing here calls getppid
	id := e.insert(t, b, e.request(idle, InstReq{Kind: Count}))[0].Insts[0].ID
	for i := 0; i < 1000; i++ {
		syscall.Getpid()
	}
	insts, _, err := b.Instruments([]uint32{id, old})
	if err != nil {
		t.Fatal(err)
	}
	n := insts[0].Fast + b.rootCalls(t, id)
	t.Logf("the broken site's counter %#x: %s; the new session's counter %#x (getppid): %d counts", old, insts[1].State, id, n)
	if id == old {
		t.Errorf("the new session's counter has the broken one's id %#x", id)
	}
	if n > 10 {
		t.Errorf("the new session's counter of getppid got %d counts while this process called getpid 1000 times", n)
	}
	if insts[1].State != Broken {
		t.Errorf("the broken counter reads as %s, want broken", insts[1].State)
	}
	if err := Unload(); !errors.Is(err, kernel.EBUSY) && !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("unloading with a broken site: %v, want it refused", err)
	}
}

// TestVMLockdown (issue 14, defect 6): under lockdown the control file
// refuses to open, whoever asks: a session writes kernel text. It locks
// the kernel down for the rest of the VM's life.
func TestVMLockdown(t *testing.T) {
	const lockdown = "/sys/kernel/security/lockdown"
	if _, err := os.Stat(lockdown); err != nil {
		t.Fatalf("no lockdown LSM, which Debian's kernels build in: %v", err)
	}
	e := newEnv(t)
	if !Loaded() {
		e.load(t, Params{})
	}
	d, err := Open()
	if err != nil {
		t.Fatalf("opening before lockdown: %v", err)
	}
	d.Close()
	if err := os.WriteFile(lockdown, []byte("integrity"), 0); err != nil {
		t.Fatal(err)
	}
	_, err = Open()
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("opening under lockdown integrity: %v, want EPERM", err)
	}
}
