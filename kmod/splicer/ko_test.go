//go:build !vm

package splicer

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/debkernel"
	"github.com/autoprof/autoprof/internal/testenv"
)

// builtKo is the module built against a Debian kernel's headers, and that
// kernel.
type builtKo struct {
	once sync.Once
	k    *debkernel.Kernel
	ko   *elf.File
	err  error
}

var builtKos = map[string]*builtKo{"6.1": {}, "6.12": {}}

// debianKo builds the module for Debian's kernel of series, once per test
// binary, as vmprep.sh builds it for the VM tests.
func debianKo(t *testing.T, series string) (*debkernel.Kernel, *elf.File) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that fetches Debian's kernel headers and builds the module")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b := builtKos[series]
	k := testenv.DebianKernel(t, ctx, series)
	b.once.Do(func() {
		b.k = k
		kdir, err := debkernel.Headers(ctx, k)
		if err != nil {
			b.err = err
			return
		}
		path, err := Build(ctx, kdir, t.TempDir())
		if err != nil {
			b.err = err
			return
		}
		b.ko, b.err = elf.Open(path)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.k, b.ko
}

// koRelocs returns a section's relocations: offset in the section to the
// symbol and addend.
type koReloc struct {
	sym    elf.Symbol
	addend int64
}

func koRelocs(t *testing.T, f *elf.File, sec *elf.Section) map[uint64]koReloc {
	t.Helper()
	out := map[uint64]koReloc{}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range f.Sections {
		if rs.Type != elf.SHT_RELA || f.Sections[rs.Info] != sec {
			continue
		}
		data, err := rs.Data()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+24 <= len(data); i += 24 {
			off := binary.LittleEndian.Uint64(data[i:])
			info := binary.LittleEndian.Uint64(data[i+8:])
			if idx := info >> 32; idx > 0 && int(idx) <= len(syms) {
				out[off] = koReloc{syms[idx-1], int64(binary.LittleEndian.Uint64(data[i+16:]))}
			}
		}
	}
	return out
}

// koInst is one instruction of the module's code.
type koInst struct {
	sec  *elf.Section
	fn   string
	off  uint64 // in the section
	inst x86asm.Inst
}

// koCode decodes every function of the module's executable sections.
func koCode(t *testing.T, f *elf.File) []koInst {
	t.Helper()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var out []koInst
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || int(s.Section) >= len(f.Sections) {
			continue
		}
		sec := f.Sections[s.Section]
		code, err := sec.Data()
		if err != nil {
			t.Fatal(err)
		}
		for off := s.Value; off < s.Value+s.Size; {
			b := code[off : s.Value+s.Size]
			if n := extraLen(b); n > 0 {
				off += uint64(n)
				continue
			}
			in, err := x86asm.Decode(b, 64)
			if err != nil {
				t.Fatalf("%s+%#x: % x: %v", s.Name, off-s.Value, b[:min(8, len(b))], err)
			}
			out = append(out, koInst{sec, s.Name, off, in})
			off += uint64(in.Len)
		}
	}
	return out
}

// extraLen returns the length of an encoding x86asm lacks: ENDBR64,
// CLAC, STAC, SERIALIZE (sync_core()).
func extraLen(b []byte) int {
	switch {
	case len(b) >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa:
		return 4
	case len(b) >= 3 && b[0] == 0x0f && b[1] == 0x01 && (b[2] == 0xca || b[2] == 0xcb || b[2] == 0xe8):
		return 3
	}
	return 0
}

// sealed reads the seal list of a kernel image: the functions whose ENDBR
// the kernel overwrites at boot, because nothing takes their address (no
// indirect call may land there).
func sealed(t *testing.T, k *debkernel.Kernel) map[string]bool {
	t.Helper()
	im, err := callgraph.OpenImage(k.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := im.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	start, ok1 := syms.Symbol("__ibt_endbr_seal")
	end, ok2 := syms.Symbol("__ibt_endbr_seal_end")
	out := map[string]bool{}
	if !ok1 || !ok2 {
		return out // no IBT
	}
	b := make([]byte, end.Addr-start.Addr)
	if err := im.ReadAt(b, start.Addr); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+4 <= len(b); i += 4 {
		at := start.Addr + uint64(i) + uint64(int64(int32(binary.LittleEndian.Uint32(b[i:]))))
		for _, s := range syms.Aliases(at) {
			out[s.Name] = true
		}
	}
	return out
}

// TestNoIndirectCalls (issue 14, defect 1): on Debian's 6.12, with IBT,
// the kernel seals the ENDBR of every function whose address it never
// takes, and an indirect call to one faults ("Missing ENDBR"):
// search_exception_tables, which the module called through a pointer,
// insn_decode and the *_text_reserved() checks among them. The module
// reaches every kernel function it needs by a static call (a direct call
// once retargeted), so its code, built for each Debian kernel, holds no
// indirect call or jump at all, through a register, memory or a retpoline
// thunk.
func TestNoIndirectCalls(t *testing.T) {
	k, _ := debianKo(t, "6.12")
	seal := sealed(t, k)
	var hit []string
	for _, in := range Internals {
		if in.Func && seal[in.Symbol] {
			hit = append(hit, in.Symbol)
		}
	}
	t.Logf("Debian %s seals %d functions, among those the module calls: %s", k.Release, len(seal), strings.Join(hit, ", "))
	if !seal["search_exception_tables"] || !seal["insn_decode"] {
		t.Errorf("the seal list has not search_exception_tables and insn_decode: read wrong?")
	}
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			_, ko := debianKo(t, series)
			n := 0
			relocs := map[*elf.Section]map[uint64]koReloc{}
			for _, in := range koCode(t, ko) {
				n++
				if in.inst.Op != x86asm.CALL && in.inst.Op != x86asm.JMP {
					continue
				}
				switch in.inst.Args[0].(type) {
				case x86asm.Reg, x86asm.Mem:
					t.Errorf("%s+%#x: indirect %s", in.fn, in.off, x86asm.GNUSyntax(in.inst, 0, nil))
				case x86asm.Rel:
					if relocs[in.sec] == nil {
						relocs[in.sec] = koRelocs(t, ko, in.sec)
					}
					r, ok := relocs[in.sec][in.off+uint64(in.inst.Len)-4]
					if ok && strings.HasPrefix(r.sym.Name, "__x86_indirect_") {
						t.Errorf("%s+%#x: an indirect %s through %s", in.fn, in.off, in.inst.Op, r.sym.Name)
					}
				}
			}
			t.Logf("%d instructions, no indirect call or jump", n)
		})
	}
}

// TestReturnSites (issue 14, defect 7): objtool checks every object of the
// module, the stubs included, so every return of its code (a jmp to
// __x86_return_thunk as built) is in .return_sites, where the kernel
// applies its retbleed/SRSO choice when it loads the module. Before, the
// stubs were kept from objtool: on 6.1, ap_stub_count's return was a raw
// jmp __x86_return_thunk outside .return_sites.
func TestReturnSites(t *testing.T) {
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			_, ko := debianKo(t, series)
			text := ko.Section(".text")
			sites := ko.Section(".return_sites")
			if text == nil || sites == nil {
				t.Fatal("the module has no .text or no .return_sites")
			}
			listed := map[uint64]bool{}
			for _, r := range koRelocs(t, ko, sites) {
				if ko.Sections[r.sym.Section] == text {
					listed[r.sym.Value+uint64(r.addend)] = true
				}
			}
			relocs := koRelocs(t, ko, text)
			n, stubs := 0, 0
			for _, in := range koCode(t, ko) {
				if in.sec != text || in.inst.Op != x86asm.JMP {
					continue
				}
				r, ok := relocs[in.off+1]
				if !ok || r.sym.Name != "__x86_return_thunk" {
					continue
				}
				n++
				if strings.HasPrefix(in.fn, "ap_stub_") {
					stubs++
				}
				if !listed[in.off] {
					t.Errorf("%s+%#x: a return outside .return_sites", in.fn, in.off)
				}
			}
			t.Logf("%d returns in .text, %d of them the stubs', every one listed", n, stubs)
			if stubs != 5 {
				t.Errorf("%d returns in the stubs, want 5 (enter, exit, exit_flags, count, count_flags)", stubs)
			}
		})
	}
}

// TestStubFlags (issue 14, found by the soak): the stubs that serve
// windows with dead flags (a function's entry and returns, block windows
// whose next instructions write every flag first) run no popfq: AC comes
// back by STAC. The _flags stubs, for live flags, rebuild RFLAGS from the
// saved arithmetic flags and AC and the rest as it is, then popfq. Before,
// every stub but the entry's ran popfq on the word pushfq had saved: QEMU's
// TCG before 8.0 then took that word for the flags that the allocator's
// per-CPU cmpxchg16b starts from, leaving TF, NT and reserved bits set at
// random, and a stub after it loaded them (TestVMSpliceFlagsState).
func TestStubFlags(t *testing.T) {
	const saved = 0x408d5 // CF, PF, AF, ZF, SF, OF and AC
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			_, ko := debianKo(t, series)
			byFn := map[string][]x86asm.Inst{}
			for _, in := range koCode(t, ko) {
				if strings.HasPrefix(in.fn, "ap_stub_") {
					byFn[in.fn] = append(byFn[in.fn], in.inst)
				}
			}
			for fn, live := range map[string]bool{
				"ap_stub_enter": false, "ap_stub_exit": false, "ap_stub_count": false,
				"ap_stub_exit_flags": true, "ap_stub_count_flags": true,
			} {
				insts := byFn[fn]
				if len(insts) == 0 {
					t.Errorf("%s: not in the module", fn)
					continue
				}
				popf, masked := 0, false
				for _, in := range insts {
					switch {
					case in.Op == x86asm.POPFQ:
						popf++
					case in.Op == x86asm.AND && popf == 0:
						m, ok := in.Args[0].(x86asm.Mem)
						imm, ok2 := in.Args[1].(x86asm.Imm)
						masked = masked || ok && ok2 && m.Base == x86asm.RSP && m.Disp == 8 && imm == saved
					}
				}
				if !live && popf != 0 {
					t.Errorf("%s: %d popfq where the flags are dead", fn, popf)
				}
				if live && (popf != 1 || !masked) {
					t.Errorf("%s: %d popfq, saved word masked to the arithmetic flags and AC: %v; want one, masked", fn, popf, masked)
				}
			}
		})
	}
}

// TestSMAPSites: every stub clears AC before it calls C and gives it back
// as it was. The CLAC and STAC are 3-byte nops in the object, named
// ap_clac_* and ap_stac_*, that ap_synthesize_clac (patch.c) turns into
// CLAC and STAC under SMAP: each must be a nop of 3 bytes, each must be
// on patch.c's list of the right kind (a site left off stays a nop, and
// the handler runs inside the user-access region; a STAC listed as CLAC
// leaves the code after the trampoline without AC, and its next user
// access faults), a stub for dead flags must CLAC before its call and
// STAC after it, both only where the saved AC is set (a test of AC in the
// saved RFLAGS, then a jump over the 3 bytes), and a _flags stub must
// CLAC before its call (its popfq gives AC back).
func TestSMAPSites(t *testing.T) {
	src, err := sources.ReadFile("module/patch.c")
	if err != nil {
		t.Fatal(err)
	}
	listed := func(array string) map[string]bool {
		s := string(src)
		i := strings.Index(s, "u8 *"+array+"[] = {")
		if i < 0 {
			t.Fatalf("patch.c: no array %s", array)
		}
		s = s[i+len("u8 *"+array+"[] = {"):]
		s = s[:strings.Index(s, "}")]
		out := map[string]bool{}
		for _, name := range strings.Split(s, ",") {
			out[strings.TrimSpace(name)] = true
		}
		return out
	}
	clacs, stacs := listed("clacs"), listed("stacs")
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			_, ko := debianKo(t, series)
			syms, err := ko.Symbols()
			if err != nil {
				t.Fatal(err)
			}
			sites := map[uint64]string{} // offset in .text to the site's name
			for _, s := range syms {
				if strings.HasPrefix(s.Name, "ap_clac_") || strings.HasPrefix(s.Name, "ap_stac_") {
					if int(s.Section) >= len(ko.Sections) || ko.Sections[s.Section].Name != ".text" {
						t.Errorf("%s: not in .text", s.Name)
						continue
					}
					sites[s.Value] = s.Name
				}
			}
			text := ko.Section(".text")
			code, err := text.Data()
			if err != nil {
				t.Fatal(err)
			}
			for off, name := range sites {
				if b := code[off : off+3]; b[0] != 0x0f || b[1] != 0x1f || b[2] != 0x00 {
					t.Errorf("%s: % x, want the 3-byte nop 0f 1f 00", name, b)
				}
				clac := strings.HasPrefix(name, "ap_clac_")
				if clac && !clacs[name] || !clac && !stacs[name] {
					t.Errorf("%s: not in patch.c's list of %s sites", name, map[bool]string{true: "CLAC", false: "STAC"}[clac])
				}
			}
			byFn := map[string][]koInst{}
			for _, in := range koCode(t, ko) {
				if in.sec == text && strings.HasPrefix(in.fn, "ap_stub_") {
					byFn[in.fn] = append(byFn[in.fn], in)
				}
			}
			for fn, dead := range map[string]bool{
				"ap_stub_enter": true, "ap_stub_exit": true, "ap_stub_count": true,
				"ap_stub_exit_flags": false, "ap_stub_count_flags": false,
			} {
				insts := byFn[fn]
				var got []string // the sites, and the call, in order
				for i, in := range insts {
					if in.inst.Op == x86asm.CALL {
						got = append(got, "call")
					}
					name, ok := sites[in.off]
					if !ok {
						continue
					}
					kind := name[:len("ap_clac_")]
					guarded := i >= 2 && insts[i-1].inst.Op == x86asm.JE &&
						insts[i-1].inst.Args[0] == x86asm.Rel(3) &&
						insts[i-2].inst.Op == x86asm.TEST && insts[i-2].inst.Args[1] == x86asm.Imm(0x40000)
					if guarded {
						kind += "if_ac"
					}
					got = append(got, kind)
				}
				want := "ap_clac_ call"
				if dead {
					want = "ap_clac_if_ac call ap_stac_if_ac"
				}
				if strings.Join(got, " ") != want {
					t.Errorf("%s: %q, want %q", fn, strings.Join(got, " "), want)
				}
			}
		})
	}
}
