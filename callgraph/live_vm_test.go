//go:build vm

package callgraph

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// These tests run inside the test VMs (make vmtest), which boot Debian's
// 6.1 and 6.12 kernels as root with /proc/kcore, BPF and kprobes. There is
// no objdump there; the kernel's own instruction decoder (the one kprobes
// use to refuse offsets that are not instruction boundaries) stands in
// for it.

// TestVMLiveText decodes the whole core text through /proc/kcore. With no
// tracer running, ftrace has turned the image's calls to __fentry__ into
// 5-byte nops (all but a few it could not patch), and undecodable
// stretches stay as rare as in the differential tests.
func TestVMLiveText(t *testing.T) {
	g, err := openLive()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	start, end, _ := g.Symbols().CoreText()
	withProblems, fentry, calls, n := 0, 0, 0, 0
	for _, fn := range g.Symbols().Functions() {
		if fn.Module != "" || fn.Addr < start || fn.End() > end {
			continue
		}
		n++
		f, err := g.FunctionOf(fn)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Problems) > 0 {
			withProblems++
		}
		if f.Fentry >= 0 {
			fentry++
			if !bytes.Equal(f.Code[f.Fentry:f.Fentry+5], ftraceNop) {
				calls++
				t.Logf("%s: ftrace site +%#x holds % x, not the nop", fn.Name, f.Fentry, f.Code[f.Fentry:f.Fentry+5])
			}
		}
	}
	t.Logf("%d functions, %d with an ftrace site (%d of them not a nop), %d with undecodable bytes", n, fentry, calls, withProblems)
	if fentry < n/2 || calls > fentry/100 || float64(withProblems) > 0.001*float64(n) {
		t.Errorf("%d of %d functions have an ftrace site, %d of them not a nop; %d have undecodable bytes", fentry, n, calls, withProblems)
	}
}

// kprobeAt tries a kprobe (perf kprobe PMU, owned by its fd) at
// symbol+off: nil where the kernel accepts it, which it does only at
// instruction boundaries (can_probe() in arch/x86/kernel/kprobes/core.c
// decodes from the function's start). EBUSY marks text another patcher
// owns (jump labels, static calls).
func kprobeAt(t *testing.T, prog *ebpf.Program, symbol string, off uint32) error {
	t.Helper()
	l, err := link.Kprobe(symbol, prog, &link.KprobeOptions{Offset: uint64(off)})
	if err != nil {
		return err
	}
	return l.Close()
}

func kprobeProgram(t *testing.T) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Kprobe,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// TestVMBoundariesMatchKprobes compares the decoder's boundaries in
// vfs_read and ksys_read with the kernel's: every offset the kernel
// accepts must be a boundary, every other offset must be refused. The
// kernel refuses everything after the first int3 (it cannot tell padding
// from a debugger's breakpoint), so the comparison stops there.
func TestVMBoundariesMatchKprobes(t *testing.T) {
	g, err := openLive()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	prog := kprobeProgram(t)
	for _, name := range []string{"vfs_read", "ksys_read"} {
		f, err := g.Function(name)
		if err != nil {
			t.Fatal(err)
		}
		limit := f.CodeEnd
		for _, in := range f.Insts {
			if in.Kind == KindInt3 {
				limit = min(limit, in.Off)
				break
			}
		}
		accepted, refusedBoundaries := 0, 0
		for off := uint32(0); off < limit; off++ {
			err := kprobeAt(t, prog, name, off)
			switch {
			case err == nil && !f.IsBoundary(off):
				t.Errorf("%s+%#x: the kernel accepts a kprobe, the decoder says it is inside an instruction", name, off)
			case err == nil:
				accepted++
			case errors.Is(err, syscall.EBUSY):
			case f.IsBoundary(off):
				refusedBoundaries++
				t.Logf("%s+%#x: boundary refused: %v", name, off, err)
			}
		}
		t.Logf("%s: %d offsets below +%#x accepted, %d boundaries refused", name, accepted, limit, refusedBoundaries)
		if accepted == 0 || refusedBoundaries > accepted/10 {
			t.Errorf("%s: the kernel accepted %d offsets and refused %d decoder boundaries", name, accepted, refusedBoundaries)
		}
	}
}

// TestVMCalleesVfsRead checks autoprof's call sites of vfs_read against
// its live bytes: each direct site is an E8 whose rel32 lands on the
// named function's kallsyms address, each indirect site an "ff /2" or a
// call to a retpoline thunk, and no call instruction at a boundary the
// kernel accepts is missing from the list.
func TestVMCalleesVfsRead(t *testing.T) {
	g, err := openLive()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	f, err := g.Function("vfs_read")
	if err != nil {
		t.Fatal(err)
	}
	syms := g.Symbols()
	sites := map[uint32]Site{}
	for _, s := range f.Sites {
		sites[s.Off] = s
		code := f.Code[s.Off:]
		switch s.Kind {
		case Direct:
			rel := int32(binary.LittleEndian.Uint32(code[1:]))
			target := f.Sym.Addr + uint64(s.Off) + 5 + uint64(int64(rel))
			callee, err := syms.Func(s.Target)
			if code[0] != 0xe8 || err != nil || target != callee.Addr+s.TargetOff && !inPadding(syms, target, callee) {
				t.Errorf("direct site +%#x (% x) does not call %s", s.Off, code[:5], s.Target)
			}
		case Indirect:
			if !isIndirectCall(code) && !(code[0] == 0xe8 && s.Via != "") {
				t.Errorf("indirect site +%#x: % x", s.Off, code[:min(6, len(code))])
			}
		}
	}
	prog := kprobeProgram(t)
	for _, in := range f.Insts {
		code := f.Code[in.Off:in.End()]
		isCall := code[0] == 0xe8 || isIndirectCall(code)
		if !isCall || int(in.Off) == f.Fentry || kprobeAt(t, prog, "vfs_read", in.Off) != nil {
			continue
		}
		if _, ok := sites[in.Off]; !ok {
			t.Errorf("call at vfs_read+%#x (% x), a boundary the kernel accepts, is not a site", in.Off, code)
		}
	}
	if !slices.ContainsFunc(f.Sites, func(s Site) bool { return s.Kind == Indirect }) {
		t.Error("no indirect site in vfs_read")
	}
}

// isIndirectCall matches "call *r/m" (FF /2), with an optional REX prefix.
func isIndirectCall(code []byte) bool {
	if len(code) > 0 && code[0]&0xf0 == 0x40 {
		code = code[1:]
	}
	return len(code) >= 2 && code[0] == 0xff && code[1]>>3&7 == 2
}

// inPadding reports a call into the __pfx_ padding before callee (a
// call-depth-tracking thunk).
func inPadding(syms *Symbols, target uint64, callee Symbol) bool {
	pad, _, err := syms.FuncAt(target)
	return err == nil && pad.IsPadding() && pad.End() == callee.Addr
}
