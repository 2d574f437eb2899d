package callgraph

import (
	"fmt"
	"strings"
)

// Listing is a function's disassembly as autoprof disasm prints it (and
// its --json), and as the ui draws it: basic blocks of instructions, each
// with the instrument a hunt would place there, and the call sites.
type Listing struct {
	Name     string        `json:"name"`
	Address  string        `json:"address"`
	Size     uint64        `json:"size"`
	Module   string        `json:"module,omitempty"`
	Source   string        `json:"source"`
	Endbr    bool          `json:"endbr"`
	Fentry   int           `json:"fentry"`
	CodeEnd  uint32        `json:"code_end"`
	Blocks   []ListedBlock `json:"blocks"`
	Sites    []ListedSite  `json:"sites"`
	Problems []string      `json:"problems,omitempty"`
}

// ListedBlock is one basic block of a Listing.
type ListedBlock struct {
	Start  uint32       `json:"start"`
	End    uint32       `json:"end"`
	Succs  []uint32     `json:"succs"`
	Leaves bool         `json:"leaves"`
	Insts  []ListedInst `json:"insts"`
}

// ListedInst is one instruction of a Listing.
type ListedInst struct {
	Off     uint32 `json:"off"`
	Address string `json:"address"`
	Len     uint8  `json:"len"`
	Bytes   string `json:"bytes"`
	Text    string `json:"text"`
	Kind    string `json:"kind"`
	// Place is the instrument a hunt would place here (entry, block,
	// targets), "" for none.
	Place  string `json:"place,omitempty"`
	Target bool   `json:"branch_target"`
	Note   string `json:"note,omitempty"`
}

// Source describes where the graph's text comes from, for headers.
func (g *Graph) Source() string {
	if s, ok := g.Text().(fmt.Stringer); ok {
		if g.Live() {
			return "live text through " + s.String()
		}
		return "text as built, from " + s.String()
	}
	if g.Live() {
		return "live text"
	}
	return "text as built"
}

// NewListing lists f, a function of g, in AT&T syntax or, with intel,
// Intel's.
func NewListing(g *Graph, f *Function, intel bool) Listing {
	d := Listing{Name: f.Sym.Name, Address: hexAddr(f.Sym.Addr), Size: f.Sym.Size, Module: f.Sym.Module,
		Source: g.Source(), Endbr: f.Endbr, Fentry: f.Fentry, CodeEnd: f.CodeEnd, Sites: ListSites(f)}
	notes := siteNotes(f)
	for _, b := range f.Blocks {
		bj := ListedBlock{Start: b.Start, End: b.End, Succs: b.Succs, Leaves: b.Leaves}
		if bj.Succs == nil {
			bj.Succs = []uint32{}
		}
		for _, in := range f.Insts {
			if in.Off < b.Start || in.Off >= b.End {
				continue
			}
			text := f.AsmSyntax(g.Symbols(), in, intel)
			if n := calledNote(f, in.Off, text); notes[in.Off] == "" && n != "" {
				notes[in.Off] = n
			}
			bj.Insts = append(bj.Insts, ListedInst{
				Off: in.Off, Address: hexAddr(f.Sym.Addr + uint64(in.Off)), Len: in.Len, Bytes: fmt.Sprintf("% x", f.Code[in.Off:in.End()]),
				Text: text, Kind: in.Kind.String(),
				Place: string(f.PlaceAt(in.Off)), Target: f.IsTarget(in.Off), Note: notes[in.Off],
			})
		}
		d.Blocks = append(d.Blocks, bj)
	}
	for _, p := range f.Problems {
		d.Problems = append(d.Problems, p.Error())
	}
	return d
}

// siteNotes explains the instructions that leave the function or call out.
func siteNotes(f *Function) map[uint32]string {
	notes := map[uint32]string{}
	if f.Fentry >= 0 {
		notes[uint32(f.Fentry)] = "ftrace site"
	}
	for _, s := range f.Sites {
		notes[s.Off] = SiteNote(s)
	}
	for _, r := range f.Returns {
		if in, ok := f.Inst(r); ok && in.Kind != KindRet {
			notes[r] = "return (through a return thunk)"
		}
	}
	for _, e := range f.Exits {
		notes[e.Off] = "to a .cold part"
		if f.Sym.Parent != "" {
			notes[e.Off] = "back into " + f.Sym.Parent
		}
	}
	for _, jt := range f.JumpTables {
		notes[jt.Off] = fmt.Sprintf("jump table at %#x indexed by %%%s, %d entries", jt.Table, jt.Index, len(jt.Entries))
	}
	return notes
}

// calledNote names the function a direct call at off reaches where the
// instruction's text names another symbol (call-depth-tracking padding
// before it: "callq __pfx_target_fn+0x6" calls target_fn), as callees
// names it.
func calledNote(f *Function, off uint32, text string) string {
	for _, s := range f.Sites {
		if s.Off != off || s.Kind != Direct || s.Target == "" {
			continue
		}
		target := s.Target
		if s.TargetOff != 0 {
			target = fmt.Sprintf("%s+%#x", s.Target, s.TargetOff)
		}
		if !strings.HasSuffix(text, " "+target) {
			return "calls " + target
		}
	}
	return ""
}

// SiteNote describes a call site as disasm and callees both do: the
// operand of an indirect call and the thunk it goes through, the
// trampoline of a static call and its current target, the function a
// direct call reaches where its text names something else (a
// call-depth-tracking thunk before the callee).
func SiteNote(s Site) string {
	switch s.Kind {
	case Indirect:
		if s.Via != "" {
			return "indirect through " + s.Operand.String() + " (" + s.Via + ")"
		}
		return "indirect through " + s.Operand.String()
	case StaticCall:
		switch {
		case !s.Resolved:
			return "static call " + s.Via + ", target unresolved"
		case s.Target == "":
			return "static call " + s.Via + ", currently NULL"
		}
		return "static call " + s.Via + ", currently " + s.Target
	case Tail:
		return "tail call"
	}
	return ""
}

// ListedSite is one call site as disasm, callees and callers list it.
type ListedSite struct {
	From          string         `json:"from"`
	Off           uint32         `json:"off"`
	Kind          string         `json:"kind"`
	Jump          bool           `json:"jump,omitempty"`
	Target        string         `json:"target,omitempty"`
	TargetAddress string         `json:"target_address,omitempty"`
	TargetOff     uint64         `json:"target_off,omitempty"`
	Via           string         `json:"via,omitempty"`
	Resolved      bool           `json:"resolved,omitempty"`
	Operand       *ListedOperand `json:"operand,omitempty"`
	// Note says what disasm says of the site (see SiteNote).
	Note string `json:"note,omitempty"`
}

// ListedOperand is the operand of an indirect call site.
type ListedOperand struct {
	Text    string `json:"text"`
	Mem     bool   `json:"mem"`
	Segment string `json:"segment,omitempty"`
	Base    string `json:"base,omitempty"`
	Index   string `json:"index,omitempty"`
	Scale   uint8  `json:"scale,omitempty"`
	Disp    int64  `json:"disp,omitempty"`
}

// ListSite lists site s of the function named from.
func ListSite(from string, s Site) ListedSite {
	j := ListedSite{From: from, Off: s.Off, Kind: s.Kind.String(), Jump: s.Jump, Target: s.Target,
		TargetOff: s.TargetOff, Via: s.Via, Resolved: s.Resolved, Note: SiteNote(s)}
	if s.TargetAddr != 0 {
		j.TargetAddress = hexAddr(s.TargetAddr)
	}
	if o := s.Operand; o != nil {
		j.Operand = &ListedOperand{Text: o.String(), Mem: o.Mem, Segment: o.Segment, Base: o.Base, Index: o.Index, Scale: o.Scale, Disp: o.Disp}
	}
	return j
}

// ListSites lists f's call sites (never nil).
func ListSites(f *Function) []ListedSite {
	out := []ListedSite{}
	for _, s := range f.Sites {
		out = append(out, ListSite(f.Sym.Name, s))
	}
	return out
}

// ListEdges lists the sites of edges (never nil).
func ListEdges(edges []Edge) []ListedSite {
	out := []ListedSite{}
	for _, e := range edges {
		out = append(out, ListSite(e.From.Name, e.Site))
	}
	return out
}

// hexAddr formats an address for JSON (JSON numbers lose 64-bit precision).
func hexAddr(v uint64) string { return fmt.Sprintf("%#x", v) }
