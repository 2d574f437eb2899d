package callgraph

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// ftraceNop is the 5-byte nop ftrace leaves at a traceable function's entry
// when nothing traces it (x86_nops[5], P6_NOP5).
var ftraceNop = []byte{0x0f, 0x1f, 0x44, 0x00, 0x00}

// Decode decodes the function sym from its bytes code (sym.Size of them)
// and builds its basic blocks and call sites; syms names the targets. It
// does not read kernel memory, so jump tables are recorded without their
// entries and static calls are left unresolved; a Graph does both. Bytes
// that cannot be decoded are reported in Function.Problems, not guessed
// past. The error is for bad arguments only.
func Decode(sym Symbol, code []byte, syms *Symbols) (*Function, error) {
	if len(code) == 0 {
		return nil, fmt.Errorf("decoding %s: no bytes", sym.Name)
	}
	if sym.Size != 0 && uint64(len(code)) != sym.Size {
		return nil, fmt.Errorf("decoding %s: %d bytes given for a %d-byte function", sym.Name, len(code), sym.Size)
	}
	if syms == nil {
		return nil, errors.New("decoding " + sym.Name + ": no symbol table")
	}
	f := &Function{Sym: sym, Code: code, Fentry: -1}
	insts, branches, problems := sweep(code, sym.Addr)
	f.Insts, f.Problems = insts, problems
	slices.SortFunc(branches, func(a, b decodedBranch) int { return int(a.off) - int(b.off) })
	f.branches = branches
	f.findEntry(syms, branches)
	c := classifier{f: f, syms: syms, branches: branches}
	c.run()
	f.findCodeEnd()
	f.Targets = sortedUnique(f.Targets)
	f.buildBlocks()
	return f, nil
}

// branchTarget returns the absolute target of the direct branch at off.
func branchTarget(branches []decodedBranch, off uint32) (uint64, bool) {
	i := sort.Search(len(branches), func(i int) bool { return branches[i].off >= off })
	if i < len(branches) && branches[i].off == off {
		return branches[i].target, true
	}
	return 0, false
}

// sealedEndbr is what the kernel writes over the ENDBR64 of a function
// that nothing calls indirectly (apply_seal_endbr(), Linux 6.2+ with IBT):
// "osp nopl (%rax)".
var sealedEndbr = []byte{0x66, 0x0f, 0x1f, 0x00}

// findEntry recognises ENDBR64 (or its sealed form) at offset 0 and the
// ftrace site after it.
func (f *Function) findEntry(syms *Symbols, branches []decodedBranch) {
	if len(f.Insts) == 0 || f.Insts[0].Off != 0 {
		return
	}
	entry := f.Insts[0]
	if entry.Kind == KindEndbr || bytes.Equal(f.Code[:entry.Len], sealedEndbr) {
		f.Endbr = true
		if len(f.Insts) < 2 || f.Insts[1].Off != entry.End() {
			return
		}
		entry = f.Insts[1]
	}
	switch {
	case bytes.Equal(f.Code[entry.Off:entry.End()], ftraceNop):
		f.Fentry = int(entry.Off)
	case entry.Kind == KindCall:
		if t, ok := branchTarget(branches, entry.Off); ok && syms.specialAt(t).kind == specFtrace {
			f.Fentry = int(entry.Off)
		}
	}
}

// findCodeEnd sets CodeEnd past the last instruction that is not padding.
func (f *Function) findCodeEnd() {
	for i := len(f.Insts) - 1; i >= 0; i-- {
		if k := f.Insts[i].Kind; k != KindInt3 && k != KindNop {
			f.CodeEnd = f.Insts[i].End()
			return
		}
	}
}

func sortedUnique(s []uint32) []uint32 {
	slices.Sort(s)
	return slices.Compact(s)
}

// buildBlocks splits the instructions at branch targets, after every
// instruction that ends a block, and around undecoded stretches.
func (f *Function) buildBlocks() {
	f.Blocks = nil
	if len(f.Insts) == 0 {
		return
	}
	leader := make([]bool, len(f.Code)+1)
	leader[f.Insts[0].Off] = true
	for _, t := range f.Targets {
		leader[t] = true
	}
	for i, in := range f.Insts {
		last := i+1 == len(f.Insts)
		gap := !last && f.Insts[i+1].Off != in.End()
		// A run of int3 padding is one block.
		int3Run := in.Kind == KindInt3 && !last && f.Insts[i+1].Kind == KindInt3
		if endsBlock(in.Kind) && !int3Run || gap {
			leader[in.End()] = true
		}
	}
	n := 0
	for _, in := range f.Insts {
		if leader[in.Off] {
			n++
		}
	}
	f.Blocks = make([]Block, 0, n)
	succs := make([]uint32, 0, 2*n) // one backing array for every block's successors
	start := 0
	for i := range f.Insts {
		if i+1 < len(f.Insts) && !leader[f.Insts[i+1].Off] {
			continue
		}
		var b Block
		b, succs = f.makeBlock(f.Insts[start:i+1], succs)
		f.Blocks = append(f.Blocks, b)
		start = i + 1
	}
}

func endsBlock(k InstKind) bool {
	switch k {
	case KindJump, KindCondJump, KindIndirectJump, KindRet, KindStop, KindInt3:
		return true
	}
	return false
}

// makeBlock builds the block of insts; its successors are appended to
// succs, which it returns.
func (f *Function) makeBlock(insts []Inst, succs []uint32) (Block, []uint32) {
	last := insts[len(insts)-1]
	b := Block{Start: insts[0].Off, End: last.End()}
	first := len(succs)
	next := last.End()
	fallthrough_ := func() {
		if f.IsBoundary(next) {
			succs = append(succs, next)
		}
	}
	switch last.Kind {
	case KindCondJump:
		if t, ok := f.intraTarget(last.Off); ok {
			succs = append(succs, t)
		} else {
			b.Leaves = true
		}
		fallthrough_()
	case KindJump, KindIndirectJump:
		if t, ok := f.intraTarget(last.Off); ok {
			succs = append(succs, t)
		} else if entries, ok := f.tableEntries(last.Off); ok { // also a jmp to a retpoline thunk
			succs = append(succs, entries...)
		} else {
			b.Leaves = true
		}
	case KindRet, KindStop:
		b.Leaves = true
	case KindInt3:
	default:
		fallthrough_()
	}
	b.Succs = sortedUnique(succs[first:len(succs):len(succs)])
	return b, succs[:first+len(b.Succs)]
}

// intraTarget returns the in-function target of the direct jump at off,
// where it is an instruction boundary.
func (f *Function) intraTarget(off uint32) (uint32, bool) {
	t, ok := branchTarget(f.branches, off)
	if !ok || t < f.Sym.Addr || t-f.Sym.Addr >= uint64(len(f.Code)) || !f.IsBoundary(uint32(t-f.Sym.Addr)) {
		return 0, false
	}
	return uint32(t - f.Sym.Addr), true
}

// tableEntries returns the entries of the jump table used by the jump at
// off, if it was read.
func (f *Function) tableEntries(off uint32) ([]uint32, bool) {
	for _, jt := range f.JumpTables {
		if jt.Off == off && len(jt.Entries) > 0 {
			return jt.Entries, true
		}
	}
	return nil, false
}
