package textread

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/features/featuretest"
)

// symbolAddr finds a text symbol's address in /proc/kallsyms.
func symbolAddr(t *testing.T, name string) uint64 {
	t.Helper()
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		featuretest.Require(t, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == name {
			a, _ := strconv.ParseUint(fields[0], 16, 64)
			if a == 0 {
				featuretest.Require(t, errors.New("kallsyms hides addresses (kptr_restrict)"))
			}
			return a
		}
	}
	t.Fatalf("%s not in /proc/kallsyms", name)
	return 0
}

func TestReadKernelText(t *testing.T) {
	r, err := Open()
	if err != nil {
		featuretest.Require(t, err)
	}
	defer r.Close()
	addr := symbolAddr(t, "vfs_read")
	// More than one chunk, unaligned, to cover the chunking.
	buf := make([]byte, 3*chunkSize+17)
	if err := r.ReadAt(buf, addr); err != nil {
		t.Fatal(err)
	}
	// Every x86-64 kernel function starts with endbr64, a nop (the ftrace
	// site) or a push/mov prologue; all-zero bytes would mean a bad read.
	allZero := true
	for _, b := range buf[:16] {
		allZero = allZero && b == 0
	}
	if allZero {
		t.Fatalf("vfs_read starts with 16 zero bytes: % x", buf[:16])
	}
	// A second read of the same place gives the same bytes.
	again := make([]byte, 64)
	if err := r.ReadAt(again, addr); err != nil {
		t.Fatal(err)
	}
	if string(again) != string(buf[:64]) {
		t.Fatalf("two reads of vfs_read differ:\n% x\n% x", buf[:64], again)
	}
}

func TestReadUnmapped(t *testing.T) {
	r, err := Open()
	if err != nil {
		featuretest.Require(t, err)
	}
	defer r.Close()
	err = r.ReadAt(make([]byte, 8), 0x10)
	if err == nil || !strings.Contains(err.Error(), "0x10") {
		t.Fatalf("reading address 0x10: err = %v, want an error naming the address", err)
	}
}

func TestClosedReader(t *testing.T) {
	r, err := Open()
	if err != nil {
		featuretest.Require(t, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close: %v, want os.ErrClosed", err)
	}
	if err := r.ReadAt(make([]byte, 8), 0xffffffff81000000); err == nil {
		t.Fatal("read through a closed reader succeeded")
	}
}
