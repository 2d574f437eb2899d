//go:build vm

package splice

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/leakcheck"
)

// TestVMRefusals tries every blacklisted and forbidden place: all are
// refused, and the Inserts tried leave no program, kprobe or changed byte
// of text behind.
func TestVMRefusals(t *testing.T) {
	s := openSession(t, "kprobe")
	syms := s.Graph().Symbols()
	var refused []instrument.Spec // refused for kprobe, the session's backend
	try := func(backend instrument.Backend, sp instrument.Spec) {
		err := s.bpf().place.Check(backend, sp)
		if !errors.Is(err, instrument.ErrUnsafe) && !errors.Is(err, instrument.ErrNotSupported) {
			t.Errorf("%s on %s: accepted (%v)", sp, backend, err)
			return
		}
		if backend == "kprobe" {
			refused = append(refused, sp)
		}
	}
	// Every entry of the kprobe blacklist that names a function.
	bl, err := os.ReadFile("/sys/kernel/debug/kprobes/blacklist")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := parseKprobeBlacklist(bytes.NewReader(bl))
	if err != nil {
		t.Fatal(err)
	}
	nbl := 0
	for _, e := range entries {
		if sym, err := syms.Func(e.Name); err == nil && sym.Addr == e.Start {
			try("kprobe", instrument.Spec{Point: instrument.Point{Func: e.Name}, Kind: instrument.Count})
			nbl++
		}
	}
	// Every function of the forbidden sections, on both backends.
	nsec := 0
	for _, fn := range syms.Functions() {
		for _, sec := range s.bpf().place.sections {
			if sec.Start <= fn.Addr && fn.Addr < sec.End {
				if _, err := syms.Func(fn.Name); err == nil {
					try("kprobe", instrument.Spec{Point: instrument.Point{Func: fn.Name}, Kind: instrument.Count})
					try("fentry", instrument.Spec{Point: instrument.Point{Func: fn.Name}, Kind: instrument.Count})
					nsec++
				}
			}
		}
	}
	// BPF's deny list, for fentry.
	for fn := range bpfDenyList {
		if _, err := syms.Func(fn); err == nil {
			try("fentry", instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Count})
		}
	}
	// Offsets 1..255 of vfs_read that are not candidate boundaries.
	f := mustFunction(t, s, "vfs_read")
	nmid := 0
	for off := uint32(1); off < 256 && off < uint32(len(f.Code)); off++ {
		sp := instrument.Spec{Point: instrument.Point{Func: "vfs_read", Offset: uint64(off)}, Kind: instrument.Count}
		if f.IsCandidate(off) {
			if err := s.bpf().place.Check("kprobe", sp); err != nil {
				t.Errorf("%s: a boundary refused: %v", sp, err)
			}
			continue
		}
		try("kprobe", sp)
		nmid++
	}
	// The VM is QEMU's emulator: the instruction before the slab fast
	// path's cmpxchg16b (live text, alternatives applied) is refused
	// there, with the reason, and the function's entry is not.
	ncx := 0
	for _, name := range []string{"kmem_cache_alloc_noprof", "kmem_cache_alloc"} {
		f, err := s.Graph().Function(name)
		if err != nil {
			continue
		}
		for i, in := range f.Insts {
			if in.Op != x86asm.CMPXCHG16B || i == 0 {
				continue
			}
			sp := instrument.Spec{Point: instrument.Point{Func: name, Offset: uint64(f.Insts[i-1].Off)}, Kind: instrument.Count}
			err := s.bpf().place.Check("kprobe", sp)
			if !errors.Is(err, instrument.ErrUnsafe) || !strings.Contains(err.Error(), "QEMU's emulator") {
				t.Errorf("%s, before the cmpxchg16b at +%#x: %v; want refused on the emulator", sp, in.Off, err)
			}
			refused = append(refused, sp)
			ncx++
		}
		if err := s.bpf().place.Check("kprobe", instrument.Spec{Point: instrument.Point{Func: name}, Kind: instrument.Count}); err != nil {
			t.Errorf("%s's entry refused: %v", name, err)
		}
	}
	if ncx == 0 {
		t.Error("no cmpxchg16b in the live text of the slab allocator's fast path")
	}
	t.Logf("refused %d blacklist entries, %d functions in forbidden sections (x2 backends), %d mid-instruction offsets, %d before a cmpxchg16b; %d in all", nbl, nsec, nmid, ncx, len(refused))
	if nbl < 100 || nsec < 50 || nmid < 50 {
		t.Errorf("too few places tried: the lists were not read")
	}
	// Insert a sample of the refused specs: nothing may change.
	before := leakcheck.Take()
	text := make([]byte, len(f.Code))
	for i, sp := range refused {
		if i%7 != 0 {
			continue
		}
		if in, err := s.Insert(context.Background(), sp); err == nil {
			in.Close()
			t.Errorf("%s inserted", sp)
		}
	}
	if err := s.Graph().Text().ReadAt(text, f.Sym.Addr); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(text, f.Code) {
		t.Error("the text of vfs_read changed")
	}
	if leaks := before.Leaks(leakcheck.Take()); len(leaks) > 0 {
		t.Errorf("refused inserts left %v", leaks)
	}
}
