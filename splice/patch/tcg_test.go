package patch

import (
	"bytes"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
)

// Pieces for the TCG hazard.
var (
	addRCX   = []byte{0x48, 0x83, 0xc1, 0x01}       // add $1,%rcx
	cx16     = []byte{0x65, 0x48, 0x0f, 0xc7, 0x0e} // cmpxchg16b %gs:(%rsi)
	testRAX  = []byte{0x48, 0x85, 0xc0}             // test %rax,%rax
	movRAX   = []byte{0x48, 0x89, 0xc3}             // mov %rax,%rbx
	jmpNext  = []byte{0xeb, 0x00}                   // jmp .+0
	jneNext  = []byte{0x75, 0x00}                   // jne .+0
	retInst  = []byte{0xc3}
	nopInst  = []byte{0x90}
	jneOver2 = []byte{0x75, 0x02} // jne .+2: over a nop and a ret
)

func TestTCGCmpxchg16bHazard(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, c := range []struct {
		name string
		code []byte
		off  uint32
		want bool
	}{
		// The probe's popfq, an add and the cmpxchg16b in one block.
		{"add then cmpxchg16b", cat(addRCX, cx16, retInst), 0, true},
		// The kernel's test and jne end a block with its own flags
		// operation written back: the add's block starts clean.
		{"flags written back by a branch", cat(movRAX, testRAX, jneNext, addRCX, cx16, retInst), 0, false},
		// A probe on the test itself: a kprobe that cannot be boosted
		// single-steps it, and the trap's iretq comes after its write.
		{"on the flags operation", cat(testRAX, jneNext, addRCX, cx16, retInst), 0, true},
		// Two paths join: the one already clear must not hide the other.
		{"a join", cat([]byte{0x75, 0x02}, []byte{0xeb, 0x04}, addRCX, movRAX, jmpNext, addRCX, cx16, retInst), 0, true},
		// The shadow goes on past a call, to its return address.
		{"past a call in the shadow", cat(addRCX, cx16, []byte{0xe8, 0, 0, 0, 0}, nopInst, retInst), 14, true},
		// A jmp with no flags operation before it writes back the probe's.
		{"a branch with no flags operation", cat(movRAX, jmpNext, addRCX, cx16, retInst), 0, true},
		// In its shadow: no flags operation yet since the cmpxchg16b.
		{"in the shadow", cat(addRCX, cx16, nopInst, retInst), 9, true},
		// Past its shadow: the test wrote the flags.
		{"past the shadow", cat(testRAX, jneNext, addRCX, cx16, testRAX, nopInst, retInst), 0x11, false},
		// A probe before a branch whose taken side reaches it.
		{"on the taken side", cat(movRAX, jneOver2, nopInst, retInst, addRCX, cx16, retInst), 3, true},
		// No cmpxchg16b at all.
		{"no cmpxchg16b", cat(addRCX, movRAX, retInst), 0, false},
	} {
		f := function(t, c.code)
		at, got := TCGCmpxchg16bHazard(f, c.off)
		if got != c.want {
			t.Errorf("%s: hazard at +%#x = %v (at +%#x), want %v", c.name, c.off, got, at, c.want)
			continue
		}
		if got {
			if in, ok := f.Inst(at); !ok || !isCmpxchg16b(f, in) {
				t.Errorf("%s: the hazard names +%#x, not a cmpxchg16b", c.name, at)
			}
		}
	}
}

// TestTCGReturnHazard: a return in a cmpxchg16b's shadow (where a
// kretprobe's trampoline and a flag-restoring return window run pushfq
// and popfq) is a hazard; one after a flags operation is not.
func TestTCGReturnHazard(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	if r, _, ok := TCGReturnHazard(function(t, cat(addRCX, cx16, retInst))); !ok || r != 9 {
		t.Errorf("the ret right after the cmpxchg16b: hazard %v at +%#x, want +0x9", ok, r)
	}
	if r, _, ok := TCGReturnHazard(function(t, cat(addRCX, cx16, testRAX, retInst))); ok {
		t.Errorf("a ret after a test: hazard at +%#x", r)
	}
}

// TestTCGHazardInDebianSlab: in Debian's kernels, the slab allocator's
// fast paths hold the per-CPU cmpxchg16b; the instruction before it in
// its block is a hazard, the function's entry is not, and the functions
// of the sweep that have no cmpxchg16b have no hazard anywhere.
func TestTCGHazardInDebianSlab(t *testing.T) {
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			g, _ := debian(t, series)
			found := 0
			seen := map[string]bool{}
			for _, name := range append([]string{"__kmalloc_cache_noprof", "kmem_cache_alloc_noprof", "kmalloc_trace"}, sweepFunctions...) {
				f, err := g.Function(name)
				if err != nil || seen[name] {
					continue
				}
				seen[name] = true
				var hazards, cmpxchg int
				for i, in := range f.Insts {
					if in.End() > f.CodeEnd {
						break
					}
					if _, hz := TCGCmpxchg16bHazard(f, in.Off); hz {
						hazards++
						if testing.Verbose() {
							t.Logf("%s+%#x", name, in.Off)
						}
					}
					if !isCmpxchg16b(f, in) {
						continue
					}
					cmpxchg++
					if i > 0 && f.Insts[i-1].Kind == 0 {
						if _, hz := TCGCmpxchg16bHazard(f, f.Insts[i-1].Off); !hz {
							t.Errorf("%s+%#x, just before the cmpxchg16b at +%#x: no hazard", name, f.Insts[i-1].Off, in.Off)
						}
					}
				}
				if cmpxchg == 0 && hazards > 0 {
					t.Errorf("%s has no cmpxchg16b but %d hazardous offsets", name, hazards)
				}
				if cmpxchg > 0 {
					found++
					if at, hz := TCGCmpxchg16bHazard(f, 0); hz {
						t.Errorf("%s: its entry is a hazard (cmpxchg16b at +%#x)", name, at)
					}
					t.Logf("%s: %d cmpxchg16b, %d of %d instructions hazardous", name, cmpxchg, hazards, len(f.Insts))
				}
			}
			if found == 0 {
				t.Error("no slab function with a cmpxchg16b: the allocator's fast path must have one")
			}
		})
	}
}

// isCmpxchg16b: the instruction, or the call it replaces at boot.
func isCmpxchg16b(f *callgraph.Function, in callgraph.Inst) bool {
	if in.Op == x86asm.CMPXCHG16B {
		return true
	}
	for _, s := range f.Sites {
		if s.Off == in.Off && s.Target == cmpxchg16bEmu {
			return true
		}
	}
	return false
}
