//go:build vm

package livetext

import (
	"bytes"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/kmod/textread"
)

// These tests run inside the test VMs (make vmtest), which boot Debian's
// 6.1 and 6.12 kernels as root with /proc/kcore and BPF.

// TestVMKcoreChosen checks that Open picks /proc/kcore where it
// can be read.
func TestVMKcoreChosen(t *testing.T) {
	text, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer text.Close()
	if _, ok := text.(*callgraph.Kcore); !ok {
		t.Errorf("Open chose %v, want /proc/kcore", text)
	}
}

// TestVMReadersAgree reads every 25th function, and vfs_read, through
// /proc/kcore and through the BPF reader: the bytes must be the same.
func TestVMReadersAgree(t *testing.T) {
	syms, err := callgraph.LiveSymbols()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := callgraph.OpenKcore(callgraph.KcorePath)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	bt, err := textread.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer bt.Close()
	vfsRead, err := syms.Func("vfs_read")
	if err != nil {
		t.Fatal(err)
	}
	funcs := []callgraph.Symbol{vfsRead}
	for i, fn := range syms.Functions() {
		if i%25 == 0 && fn.Module == "" {
			funcs = append(funcs, fn)
		}
	}
	for _, fn := range funcs {
		a, b := make([]byte, fn.Size), make([]byte, fn.Size)
		if err := kc.ReadAt(a, fn.Addr); err != nil {
			t.Fatal(err)
		}
		if err := bt.ReadAt(b, fn.Addr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: /proc/kcore and the BPF reader disagree", fn.Name)
		}
	}
	t.Logf("%d functions read the same both ways", len(funcs))
}
