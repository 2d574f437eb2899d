package callgraph

import (
	"slices"
	"strings"
	"testing"
)

// decodeFixture decodes one function of the fixture (without a Graph: no
// jump tables read, no static calls resolved).
func decodeFixture(t *testing.T, name string) *Function {
	t.Helper()
	syms, text := fixture(t)
	sym, err := syms.Func(name)
	if err != nil {
		t.Fatal(err)
	}
	code := make([]byte, sym.Size)
	if err := text.ReadAt(code, sym.Addr); err != nil {
		t.Fatal(err)
	}
	f, err := Decode(sym, code, syms)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func off(label string) uint32 { return uint32(subjectLabels[label]) }

func TestDecodeEntry(t *testing.T) {
	f := decodeFixture(t, "subject")
	if !f.Endbr || f.Fentry != int(off("fentry")) {
		t.Errorf("Endbr %v Fentry %d, want true and %d", f.Endbr, f.Fentry, off("fentry"))
	}
	if f.IsCandidate(0) {
		t.Error("ENDBR is a candidate instrument point")
	}
	if !f.IsCandidate(off("fentry")) {
		t.Error("the ftrace site (the entry) is not a candidate")
	}
	for o := off("fentry") + 1; o < off("push"); o++ {
		if f.IsBoundary(o) || f.IsCandidate(o) {
			t.Errorf("+%#x inside the ftrace nop is a boundary", o)
		}
	}
	if f.CodeEnd != off("padding") {
		t.Errorf("CodeEnd %#x, want %#x (the int3 padding starts there)", f.CodeEnd, off("padding"))
	}
	for o := f.CodeEnd; o < uint32(len(f.Code)); o++ {
		if f.IsCandidate(o) {
			t.Errorf("+%#x in the padding is a candidate", o)
		}
	}
	if f.IsCandidate(off("tablejump") + 5) { // int3 after a jmp
		t.Error("an int3 is a candidate")
	}
}

// TestDecodeSealedEndbr: live 6.12 text where the kernel sealed the
// ENDBR64 of a function nothing calls indirectly.
func TestDecodeSealedEndbr(t *testing.T) {
	syms, _ := fixture(t)
	sym, _ := syms.Func("target_fn")
	code := append(append(append([]byte{}, sealedEndbr...), ftraceNop...), 0xc3)
	sym.Size = uint64(len(code))
	f, err := Decode(sym, code, syms)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Endbr || f.Fentry != 4 || f.IsCandidate(0) || !f.IsCandidate(4) {
		t.Errorf("Endbr %v Fentry %d candidates %v", f.Endbr, f.Fentry, f.Candidates())
	}
}

func TestDecodeSites(t *testing.T) {
	f := decodeFixture(t, "subject")
	type row struct {
		label, kind, target, via, operand string
		jump                              bool
	}
	want := []row{
		{"call", "direct", "callee", "", "", false},
		{"indirect", "indirect", "", "", "0x10(%rbx)", false},
		{"thunk", "indirect", "", "__x86_indirect_thunk_rax", "%rax", false},
		{"static", "static", "", "__SCT__fx_hook", "", false},
		{"staticnull", "static", "", "__SCT__fx_null", "", false},
		{"callthunk", "direct", "target_fn", "", "", false},
		{"callmid", "direct", "callee", "", "", false},
		{"condtail", "tail", "target_fn", "", "", true},
		{"tail", "tail", "target_fn", "", "", true},
	}
	var got []row
	for _, s := range f.Sites {
		r := row{kind: s.Kind.String(), target: s.Target, via: s.Via, jump: s.Jump}
		for l, o := range subjectLabels {
			if uint32(o) == s.Off && l != "padding" {
				r.label = l
			}
		}
		if s.Operand != nil {
			r.operand = s.Operand.String()
		}
		got = append(got, r)
	}
	if !slices.Equal(got, want) {
		t.Errorf("sites:\n got %v\nwant %v", got, want)
	}
	if s := f.Sites[6]; s.TargetOff != 2 || s.TargetAddr != fxCallee+2 {
		t.Errorf("call callee+2: TargetOff %d TargetAddr %#x", s.TargetOff, s.TargetAddr)
	}
	if len(f.Calls()) != 5 {
		t.Errorf("Calls() = %d sites, want the 3 direct and 2 tail ones with a target", len(f.Calls()))
	}
}

func TestDecodeFlow(t *testing.T) {
	f := decodeFixture(t, "subject")
	if !slices.Equal(f.Returns, []uint32{off("retthunk"), off("ret")}) {
		t.Errorf("Returns %v, want the jmp to the return thunk and the ret", f.Returns)
	}
	if len(f.Exits) != 1 || f.Exits[0].Off != off("cold") || f.Exits[0].Target != fxCold {
		t.Errorf("Exits %+v, want the jne to subject.cold", f.Exits)
	}
	if len(f.JumpTables) != 1 || f.JumpTables[0].Off != off("tablejump") || f.JumpTables[0].Table != fxRodata || f.JumpTables[0].Index != "rax" {
		t.Errorf("JumpTables %+v", f.JumpTables)
	}
	if !slices.Equal(f.Targets, []uint32{off("pop")}) {
		t.Errorf("Targets %v, want only pop (no jump table read yet)", f.Targets)
	}
	blocks := map[uint32]Block{}
	for _, b := range f.Blocks {
		blocks[b.Start] = b
	}
	je := blocks[0]
	if je.End != off("tableload") || !slices.Equal(je.Succs, []uint32{off("tableload"), off("pop")}) {
		t.Errorf("first block %+v, want it to end after je with both successors", je)
	}
	if b := blocks[off("tableload")]; !b.Leaves || len(b.Succs) != 0 {
		t.Errorf("table jump block %+v: with no entries read it leaves", b)
	}
	if b := blocks[off("pop")]; b.End != off("condtail") || !b.Leaves || !slices.Equal(b.Succs, []uint32{off("condtail")}) {
		t.Errorf("pop block %+v: jne to the cold part leaves and falls through", b)
	}
}

func TestDecodeColdPart(t *testing.T) {
	f := decodeFixture(t, "subject.cold")
	if len(f.Sites) != 0 || len(f.Exits) != 1 || f.Exits[0].Target != fxSubject+uint64(off("pop")) {
		t.Errorf("subject.cold: sites %v exits %v; the jump back into subject is an exit, not a tail call", f.Sites, f.Exits)
	}
	if f.Fentry != -1 || f.Endbr {
		t.Errorf("subject.cold: Fentry %d Endbr %v", f.Fentry, f.Endbr)
	}
}

func TestDecodeProblems(t *testing.T) {
	syms, _ := fixture(t)
	sym, _ := syms.Func("target_fn")
	for _, c := range []struct {
		name       string
		code       []byte
		wantInsts  []uint32
		wantOff    uint32
		wantReason string
	}{
		// jmp over undecodable bytes (0x06: push %es, invalid in 64-bit
		// mode): decoding resumes at the jump's target only.
		{"resume at target", []byte{0xeb, 0x02, 0x06, 0x06, 0xc3}, []uint32{0, 4}, 2, "undecodable"},
		// An instruction cut by the end of the function.
		{"truncated", []byte{0x90, 0x48, 0xb8, 0x01}, []uint32{0}, 1, "undecodable"},
		// A branch into the middle of an instruction decoded before.
		{"into the middle", []byte{0xeb, 0x01, 0xb8, 0xc3, 0x00, 0x00, 0x00, 0xc3}, []uint32{0, 2, 7}, 3, "middle of an instruction"},
	} {
		code := append(slices.Clone(c.code), make([]byte, 0)...)
		s := sym
		s.Size = uint64(len(code))
		f, err := Decode(s, code, syms)
		if err != nil {
			t.Fatal(err)
		}
		var offs []uint32
		for _, in := range f.Insts {
			offs = append(offs, in.Off)
		}
		if !slices.Equal(offs, c.wantInsts) {
			t.Errorf("%s: instructions at %v, want %v", c.name, offs, c.wantInsts)
		}
		if len(f.Problems) == 0 || f.Problems[0].Off != c.wantOff || !strings.Contains(f.Problems[0].Reason, c.wantReason) {
			t.Errorf("%s: problems %v, want one at +%#x (%s)", c.name, f.Problems, c.wantOff, c.wantReason)
		}
		if err := f.Err(); err == nil || !strings.HasPrefix(err.Error(), "target_fn+") {
			t.Errorf("%s: Err() = %v", c.name, err)
		}
	}
}

func TestDecodeBadArguments(t *testing.T) {
	syms, _ := fixture(t)
	sym, _ := syms.Func("callee")
	for _, c := range []struct {
		code []byte
		syms *Symbols
		want string
	}{
		{nil, syms, "decoding callee: no bytes"},
		{[]byte{0xc3}, syms, "decoding callee: 1 bytes given for a 16-byte function"},
		{make([]byte, 16), nil, "decoding callee: no symbol table"},
	} {
		if _, err := Decode(sym, c.code, c.syms); err == nil || err.Error() != c.want {
			t.Errorf("Decode: %v, want %s", err, c.want)
		}
	}
}

func TestExtraEncodings(t *testing.T) {
	for _, c := range []struct {
		hex  string
		name string
		n    int
	}{
		{"f30f1efa", "endbr64", 4},
		{"0f01ca", "clac", 3},
		{"0f01cb", "stac", 3},
		{"f3480fc7f8", "rdpid", 5},
		{"f20f00f7", "lkgs", 4},
		{"66480f38f545f8", "wruss", 7},
		{"660f38f80c2500000000", "movdir64b", 10},
		{"c5f877", "vzeroupper", 3},
		{"660f01cc", "tdcall", 4},
	} {
		code := mustHex(t, c.hex)
		name, n, _, ok := decodeExtra(code)
		if !ok || name != c.name || n != c.n {
			t.Errorf("% x: %q %d %v, want %s of %d bytes", code, name, n, ok, c.name, c.n)
		}
	}
	// Not extra encodings: the register forms of other group members and
	// instructions x86asm knows.
	for _, h := range []string{"0f01d0", "90", "0fc7f0", "f20f01fc"} {
		if name, _, _, ok := decodeExtra(mustHex(t, h)); ok {
			t.Errorf("%s decoded as extra %s", h, name)
		}
	}
}

func TestOperandString(t *testing.T) {
	for _, c := range []struct {
		op   Operand
		want string
	}{
		{Operand{Base: "rax"}, "%rax"},
		{Operand{Mem: true, Base: "rbx", Disp: 0x10}, "0x10(%rbx)"},
		{Operand{Mem: true, Base: "rbx", Index: "rcx", Scale: 8, Disp: -8}, "-0x8(%rbx,%rcx,8)"},
		{Operand{Mem: true, Disp: 0x1000}, "0x1000"},
		{Operand{Mem: true, Segment: "gs", Disp: 0x28}, "%gs:0x28"},
	} {
		if got := c.op.String(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.op, got, c.want)
		}
	}
}
