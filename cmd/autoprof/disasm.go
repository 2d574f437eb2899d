package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
)

func runDisasm(args []string, stdout io.Writer) error {
	fs := newFlags("disasm", "FUNC")
	kf := addKernelFlags(fs)
	intel := fs.Bool("intel", false, "Intel syntax (objdump -M intel) instead of AT&T")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("disasm takes one FUNC (a name, MODULE:NAME or 0xADDRESS)")
	}
	g, err := kf.open()
	if err != nil {
		return err
	}
	defer g.Close()
	f, err := g.Function(pos[0])
	if err != nil {
		return funcErr(pos[0], err)
	}
	d := disassemble(g, f, *intel)
	if *kf.asJSON {
		return writeJSON(stdout, d)
	}
	printDisasm(stdout, d)
	return nil
}

// disasmJSON is a function's listing.
type disasmJSON struct {
	Name     string      `json:"name"`
	Address  string      `json:"address"`
	Size     uint64      `json:"size"`
	Module   string      `json:"module,omitempty"`
	Source   string      `json:"source"`
	Endbr    bool        `json:"endbr"`
	Fentry   int         `json:"fentry"`
	CodeEnd  uint32      `json:"code_end"`
	Blocks   []blockJSON `json:"blocks"`
	Sites    []siteJSON  `json:"sites"`
	Problems []string    `json:"problems,omitempty"`
}

type blockJSON struct {
	Start  uint32     `json:"start"`
	End    uint32     `json:"end"`
	Succs  []uint32   `json:"succs"`
	Leaves bool       `json:"leaves"`
	Insts  []instJSON `json:"insts"`
}

type instJSON struct {
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

func disassemble(g *callgraph.Graph, f *callgraph.Function, intel bool) disasmJSON {
	d := disasmJSON{Name: f.Sym.Name, Address: hexAddr(f.Sym.Addr), Size: f.Sym.Size, Module: f.Sym.Module,
		Source: source(g), Endbr: f.Endbr, Fentry: f.Fentry, CodeEnd: f.CodeEnd, Sites: sitesJSON(f)}
	notes := siteNotes(f)
	for _, b := range f.Blocks {
		bj := blockJSON{Start: b.Start, End: b.End, Succs: b.Succs, Leaves: b.Leaves}
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
			bj.Insts = append(bj.Insts, instJSON{
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
func siteNotes(f *callgraph.Function) map[uint32]string {
	notes := map[uint32]string{}
	if f.Fentry >= 0 {
		notes[uint32(f.Fentry)] = "ftrace site"
	}
	for _, s := range f.Sites {
		notes[s.Off] = siteNote(s)
	}
	for _, r := range f.Returns {
		if in, ok := f.Inst(r); ok && in.Kind != callgraph.KindRet {
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
func calledNote(f *callgraph.Function, off uint32, text string) string {
	for _, s := range f.Sites {
		if s.Off != off || s.Kind != callgraph.Direct || s.Target == "" {
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

// siteNote describes a call site as disasm and callees both do: the
// operand of an indirect call and the thunk it goes through, the
// trampoline of a static call and its current target, the function a
// direct call reaches where its text names something else (a
// call-depth-tracking thunk before the callee).
func siteNote(s callgraph.Site) string {
	switch s.Kind {
	case callgraph.Indirect:
		if s.Via != "" {
			return "indirect through " + s.Operand.String() + " (" + s.Via + ")"
		}
		return "indirect through " + s.Operand.String()
	case callgraph.StaticCall:
		switch {
		case !s.Resolved:
			return "static call " + s.Via + ", target unresolved"
		case s.Target == "":
			return "static call " + s.Via + ", currently NULL"
		}
		return "static call " + s.Via + ", currently " + s.Target
	case callgraph.Tail:
		return "tail call"
	}
	return ""
}

// placeMarks are the marks of disasm's first column.
var placeMarks = map[string]byte{"entry": 'E', "block": 'B', "targets": 'T'}

func printDisasm(w io.Writer, d disasmJSON) {
	mod := ""
	if d.Module != "" {
		mod = " [" + d.Module + "]"
	}
	fmt.Fprintf(w, "%s%s at %s, %d bytes, %s\n", d.Name, mod, d.Address, d.Size, d.Source)
	fmt.Fprintln(w, "marks: where a hunt places instruments: E entry timer or counter, B basic-block counter, T indirect-call target capture; > branch target")
	for _, b := range d.Blocks {
		fmt.Fprintf(w, "\nblock +%#x..+%#x%s\n", b.Start, b.End, succText(b))
		for _, in := range b.Insts {
			mark := []byte("  ")
			if m, ok := placeMarks[in.Place]; ok {
				mark[0] = m
			}
			if in.Target {
				mark[1] = '>'
			}
			line := fmt.Sprintf("%s %s +%-6s %-21s %s", mark, strings.TrimPrefix(in.Address, "0x"), fmt.Sprintf("%#x", in.Off), shortBytes(in.Bytes), in.Text)
			if in.Note != "" {
				line = fmt.Sprintf("%-86s # %s", line, in.Note)
			}
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
	}
	for _, p := range d.Problems {
		fmt.Fprintf(w, "\nundecoded: %s%s\n", d.Name, p)
	}
}

// shortBytes shows at most 7 bytes of an instruction, as objdump's first
// line does, with "…" for the rest.
func shortBytes(hex string) string {
	if len(hex) <= 20 {
		return hex
	}
	return hex[:20] + "…"
}

func succText(b blockJSON) string {
	var parts []string
	for _, s := range b.Succs {
		parts = append(parts, fmt.Sprintf("+%#x", s))
	}
	if b.Leaves {
		parts = append(parts, "out")
	}
	if len(parts) == 0 {
		return ""
	}
	return " -> " + strings.Join(parts, " ")
}
