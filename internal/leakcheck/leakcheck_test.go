package leakcheck

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/autoprof/autoprof/internal/features/featuretest"
)

func TestFindsLeakedProgram(t *testing.T) {
	before := Take()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 0, asm.DWord), asm.Return()},
	})
	if err != nil {
		featuretest.Require(t, err)
	}
	leaks := before.Leaks(Take())
	settled := before.Settled() // the program stays open for all of its checks
	prog.Close()
	for _, got := range [][]string{leaks, settled} {
		joined := strings.Join(got, "\n")
		if !strings.Contains(joined, "BPF program id") || !strings.Contains(joined, "anon_inode:bpf-prog") {
			t.Fatalf("a live program was not reported: %q", got)
		}
	}
	if after := before.Settled(); len(after) != 0 {
		t.Fatalf("after Close, still reported: %q", after)
	}
}
