//go:build !vm

package callgraph

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// FuzzDecode decodes arbitrary bytes as a function and checks the
// invariants of the result: instructions in order, inside the bytes and
// decodable from their own bytes alone (no over-read), blocks made of
// whole instructions whose successors are block starts, targets, sites
// and candidates at instruction boundaries.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3})
	f.Add(subjectAsm().finish(fxSubjSize))
	syms, _ := fixture(f)
	base, _ := syms.Func("subject")
	f.Fuzz(func(t *testing.T, code []byte) {
		if len(code) == 0 || len(code) > 1<<16 {
			return
		}
		sym := base
		sym.Size = uint64(len(code))
		fn, err := Decode(sym, bytes.Clone(code), syms)
		if err != nil {
			t.Fatal(err)
		}
		checkFunction(t, fn)
	})
}

func checkFunction(t *testing.T, f *Function) {
	end := uint32(0)
	for i, in := range f.Insts {
		if i > 0 && in.Off < end {
			t.Fatalf("instruction at +%#x overlaps the one before", in.Off)
		}
		if in.Len == 0 || in.End() > uint32(len(f.Code)) {
			t.Fatalf("instruction at +%#x of %d bytes is outside %d bytes", in.Off, in.Len, len(f.Code))
		}
		if d, err := decodeOne(f.Code[in.Off:in.End()]); err != nil || d.length != int(in.Len) {
			t.Fatalf("+%#x: decoding its own %d bytes gives %d, %v", in.Off, in.Len, d.length, err)
		}
		end = in.End()
	}
	starts := map[uint32]bool{}
	for _, b := range f.Blocks {
		starts[b.Start] = true
		if !f.IsBoundary(b.Start) || b.End <= b.Start {
			t.Fatalf("block %+v does not start at an instruction", b)
		}
	}
	for _, b := range f.Blocks {
		for _, s := range b.Succs {
			if !starts[s] {
				t.Fatalf("block %+v: successor +%#x starts no block", b, s)
			}
		}
	}
	for _, o := range f.Targets {
		if !starts[o] {
			t.Fatalf("target +%#x starts no block", o)
		}
	}
	for _, s := range f.Sites {
		if !f.IsBoundary(s.Off) {
			t.Fatalf("site at +%#x is not an instruction", s.Off)
		}
	}
	for _, o := range f.Candidates() {
		if !f.IsBoundary(o) || o >= f.CodeEnd {
			t.Fatalf("candidate +%#x", o)
		}
	}
	for _, p := range f.Problems {
		if p.Off >= uint32(len(f.Code)) {
			t.Fatalf("problem at +%#x past the end", p.Off)
		}
	}
}

// FuzzParseKallsyms checks that the parser never panics and that what it
// accepts has ordered, disjoint functions that FuncAt finds again.
func FuzzParseKallsyms(f *testing.F) {
	f.Add(kallsyms612)
	f.Add("ffffffff81000000 T _stext\nffffffff81000010 t a\t[m]\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseKallsyms(strings.NewReader(text))
		if err != nil {
			return
		}
		funcs := s.Functions()
		for i, fn := range funcs {
			if i > 0 && funcs[i-1].End() > fn.Addr {
				t.Fatalf("%s overlaps %s", funcs[i-1].Name, fn.Name)
			}
			if got, off, err := s.FuncAt(fn.Addr); err != nil || got.Addr != fn.Addr || off != 0 {
				t.Fatalf("FuncAt(%s) = %v, %d, %v", fn.Name, got, off, err)
			}
		}
	})
}

// FuzzImageKallsyms feeds arbitrary bytes to the finder of the kallsyms
// tables.
func FuzzImageKallsyms(f *testing.F) {
	f.Add(buildKallsyms(syntheticSymbols(300, 0xffffffff81000000, 1), layout61, true, 0xffffffff81000000))
	f.Add(buildKallsyms(syntheticSymbols(300, 0xffffffff81000000, 0), layout612, false, 0xffffffff81000000))
	f.Fuzz(func(t *testing.T, d []byte) {
		syms, err := imageKallsyms(d, 0xffffffff82000000)
		if err == nil && len(syms) == 0 {
			t.Fatal("no error and no symbols")
		}
	})
}

// FuzzVmlinuxFromImage feeds arbitrary bytes to the bzImage unpacker.
func FuzzVmlinuxFromImage(f *testing.F) {
	f.Add(bzImage([]byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0}, 8))
	f.Add(append(bytes.Clone(xzMagic), 0, 1, 0x69, 0x22, 0xde, 0x36, 2, 1, 4, 0))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x88})
	f.Fuzz(func(t *testing.T, d []byte) {
		out, err := VmlinuxFromImage(d)
		if err == nil && !bytes.HasPrefix(out, elfMagic) {
			t.Fatal("accepted something that is not an ELF file")
		}
	})
}

// TestRandomBytes decodes a million random 15-byte buffers (SAFETY A1,
// after the kernel's insn_sanity -m 1000000): no panic, no instruction
// longer than its buffer, and each decodes the same from its own bytes
// alone, so nothing past an instruction was read.
func TestRandomBytes(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 15)
	decoded := 0
	for i := 0; i < n; i++ {
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		d, err := decodeOne(buf)
		if err != nil {
			continue
		}
		decoded++
		if d.length < 1 || d.length > len(buf) {
			t.Fatalf("% x: length %d", buf, d.length)
		}
		if again, err := decodeOne(bytes.Clone(buf[:d.length])); err != nil || again.length != d.length {
			t.Fatalf("% x: %d bytes, but %d, %v from its own bytes", buf, d.length, again.length, err)
		}
	}
	t.Logf("%d of %d random buffers start with a decodable instruction", decoded, n)
}
