package callgraph

import (
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// classifier turns the decoded control-flow instructions of a function
// into call sites, returns, in-function targets, exits to cold parts and
// jump tables.
type classifier struct {
	f        *Function
	syms     *Symbols
	branches []decodedBranch
	related  [][2]uint64 // the function's cold parts, or a cold part's parent and siblings
}

func (c *classifier) run() {
	c.related = c.relatedRanges()
	for i, in := range c.f.Insts {
		switch in.Kind {
		case KindCall:
			c.call(in)
		case KindJump, KindCondJump:
			c.jump(i, in)
		case KindIndirectCall:
			c.indirect(i, in, false)
		case KindIndirectJump:
			c.indirect(i, in, true)
		case KindRet:
			c.f.Returns = append(c.f.Returns, in.Off)
		}
	}
}

// relatedRanges returns the extents that jumps may reach without being
// tail calls: for foo, its parts foo.cold*; for foo.cold, foo and the
// other parts.
func (c *classifier) relatedRanges() [][2]uint64 {
	sym := c.f.Sym
	parent := sym.Name
	var out [][2]uint64
	if sym.Parent != "" {
		parent = sym.Parent
		for i := range c.syms.byName.named(parent) {
			if p := c.syms.all[i]; p.Module == sym.Module && p.Size > 0 {
				out = append(out, [2]uint64{p.Addr, p.End()})
			}
		}
	}
	for _, part := range c.syms.ColdParts(Symbol{Name: parent, Module: sym.Module}) {
		if part.Addr != sym.Addr {
			out = append(out, [2]uint64{part.Addr, part.End()})
		}
	}
	return out
}

func (c *classifier) isRelated(addr uint64) bool {
	for _, r := range c.related {
		if r[0] <= addr && addr < r[1] {
			return true
		}
	}
	return false
}

// intra returns the offset of an absolute address inside the function.
func (c *classifier) intra(addr uint64) (uint32, bool) {
	if addr >= c.f.Sym.Addr && addr < c.f.Sym.Addr+uint64(len(c.f.Code)) {
		return uint32(addr - c.f.Sym.Addr), true
	}
	return 0, false
}

// addTarget records an in-function branch target. A target inside an
// instruction is a Problem the sweep reported, not a target.
func (c *classifier) addTarget(off uint32) {
	if c.f.IsBoundary(off) {
		c.f.Targets = append(c.f.Targets, off)
	}
}

// resolve names the function an address lies in. A call into the padding
// before a function (a call-depth-tracking accounting thunk patched in at
// run time) counts as a call of the function after it.
func (c *classifier) resolve(addr uint64) (string, uint64) {
	sym, off, err := c.syms.FuncAt(addr)
	if err != nil {
		return "", 0
	}
	if sym.IsPadding() {
		if next, noff, err := c.syms.FuncAt(sym.End()); err == nil && noff == 0 {
			return next.Name, 0
		}
	}
	return sym.Name, off
}

func (c *classifier) call(in Inst) {
	if int(in.Off) == c.f.Fentry {
		return
	}
	t, _ := branchTarget(c.branches, in.Off)
	site := Site{Off: in.Off, Len: in.Len, TargetAddr: t}
	switch sp := c.syms.specialAt(t); sp.kind {
	case specIndirectThunk:
		site.Kind, site.Via, site.TargetAddr = Indirect, sp.name, 0
		site.Operand = &Operand{Base: sp.reg}
	case specStaticCall:
		site.Kind, site.Via, site.TargetAddr = StaticCall, sp.name, 0
	default:
		site.Kind = Direct
		if off, ok := c.intra(t); ok {
			c.addTarget(off)
			site.Target, site.TargetOff = c.f.Sym.Name, uint64(off)
		} else {
			site.Target, site.TargetOff = c.resolve(t)
		}
	}
	c.f.Sites = append(c.f.Sites, site)
}

func (c *classifier) jump(i int, in Inst) {
	t, _ := branchTarget(c.branches, in.Off)
	if off, ok := c.intra(t); ok {
		c.addTarget(off)
		return
	}
	site := Site{Off: in.Off, Len: in.Len, Jump: true, TargetAddr: t}
	switch sp := c.syms.specialAt(t); sp.kind {
	case specReturnThunk:
		c.f.Returns = append(c.f.Returns, in.Off)
		return
	case specIndirectThunk:
		if in.Kind == KindJump {
			if jt, ok := c.tableLoad(i, sp.reg); ok {
				c.f.JumpTables = append(c.f.JumpTables, jt)
				return
			}
		}
		site.Kind, site.Via, site.TargetAddr = Indirect, sp.name, 0
		site.Operand = &Operand{Base: sp.reg}
	case specStaticCall:
		site.Kind, site.Via, site.TargetAddr = StaticCall, sp.name, 0
	default:
		if c.isRelated(t) {
			c.f.Exits = append(c.f.Exits, Exit{Off: in.Off, Target: t})
			return
		}
		site.Kind = Tail
		site.Target, site.TargetOff = c.resolve(t)
	}
	c.f.Sites = append(c.f.Sites, site)
}

// indirect records a call or jmp through a register or memory, or the
// jump table it uses.
func (c *classifier) indirect(i int, in Inst, jump bool) {
	d, err := decodeOne(c.f.Code[in.Off:in.End()])
	if err != nil {
		return
	}
	op := operand(d.inst.Args[0], c.f.Sym.Addr+uint64(in.End()))
	if jump {
		if op.Mem && op.Base == "" && op.Index != "" && op.Scale == 8 && op.Segment == "" {
			c.f.JumpTables = append(c.f.JumpTables, JumpTable{Off: in.Off, Table: uint64(op.Disp), Index: op.Index})
			return
		}
		if !op.Mem {
			if jt, ok := c.tableLoad(i, op.Base); ok {
				c.f.JumpTables = append(c.f.JumpTables, jt)
				return
			}
		}
	}
	c.f.Sites = append(c.f.Sites, Site{Off: in.Off, Len: in.Len, Kind: Indirect, Jump: jump, Operand: &op})
}

// tableLoad looks back from the jump at Insts[i], within its straight-line
// code, for "mov TABLE(,%idx,8),%reg" loading the register it jumps
// through, with nothing in between writing that register.
func (c *classifier) tableLoad(i int, reg string) (JumpTable, bool) {
	jumpOff := c.f.Insts[i].Off
	for k := i - 1; k >= 0 && k >= i-8; k-- {
		in := c.f.Insts[k]
		if in.End() != c.f.Insts[k+1].Off || in.Kind != KindOther && in.Kind != KindNop {
			break
		}
		d, err := decodeOne(c.f.Code[in.Off:in.End()])
		if err != nil {
			break
		}
		dst, ok := d.inst.Args[0].(x86asm.Reg)
		if !ok || regName(dst) != reg {
			continue
		}
		m, isMem := d.inst.Args[1].(x86asm.Mem)
		if d.inst.Op == x86asm.MOV && isMem && m.Base == 0 && m.Index != 0 && m.Scale == 8 && m.Segment == 0 {
			return JumpTable{Off: jumpOff, Table: uint64(m.Disp), Index: regName(m.Index)}, true
		}
		break
	}
	return JumpTable{}, false
}

// operand converts an x86asm call or jmp operand; next is the address
// after the instruction, for RIP-relative operands.
func operand(arg x86asm.Arg, next uint64) Operand {
	switch a := arg.(type) {
	case x86asm.Reg:
		return Operand{Base: regName(a)}
	case x86asm.Mem:
		op := Operand{Mem: true, Scale: a.Scale, Disp: a.Disp}
		if a.Segment != 0 {
			op.Segment = regName(a.Segment)
		}
		switch a.Base {
		case x86asm.RIP:
			op.Disp = int64(next) + a.Disp
		case 0:
		default:
			op.Base = regName(a.Base)
		}
		if a.Index != 0 {
			op.Index = regName(a.Index)
		} else {
			op.Scale = 0
		}
		return op
	}
	return Operand{}
}

func regName(r x86asm.Reg) string { return strings.ToLower(r.String()) }
