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
		return err
	}
	d := disassemble(g, f)
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
	Off       uint32 `json:"off"`
	Len       uint8  `json:"len"`
	Bytes     string `json:"bytes"`
	Text      string `json:"text"`
	Kind      string `json:"kind"`
	Candidate bool   `json:"candidate"`
	Target    bool   `json:"branch_target"`
	Note      string `json:"note,omitempty"`
}

func disassemble(g *callgraph.Graph, f *callgraph.Function) disasmJSON {
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
			bj.Insts = append(bj.Insts, instJSON{
				Off: in.Off, Len: in.Len, Bytes: fmt.Sprintf("%x", f.Code[in.Off:in.End()]),
				Text: f.Asm(g.Symbols(), in), Kind: in.Kind.String(),
				Candidate: f.IsCandidate(in.Off), Target: f.IsTarget(in.Off), Note: notes[in.Off],
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

func siteNote(s callgraph.Site) string {
	switch s.Kind {
	case callgraph.Tail:
		return "tail call"
	case callgraph.Indirect:
		if s.Via != "" {
			return "indirect through " + s.Operand.String() + " (retpoline thunk)"
		}
		return "indirect through " + s.Operand.String()
	case callgraph.StaticCall:
		switch {
		case !s.Resolved:
			return "static call, target unresolved"
		case s.Target == "":
			return "static call, currently NULL"
		}
		return "static call, currently " + s.Target
	}
	return ""
}

func printDisasm(w io.Writer, d disasmJSON) {
	mod := ""
	if d.Module != "" {
		mod = " [" + d.Module + "]"
	}
	fmt.Fprintf(w, "%s%s at %s, %d bytes, %s\n", d.Name, mod, d.Address, d.Size, d.Source)
	fmt.Fprintln(w, "marks: * candidate instrument point, > branch target")
	for _, b := range d.Blocks {
		fmt.Fprintf(w, "\nblock +%#x..+%#x%s\n", b.Start, b.End, succText(b))
		for _, in := range b.Insts {
			mark := []byte("  ")
			if in.Candidate {
				mark[0] = '*'
			}
			if in.Target {
				mark[1] = '>'
			}
			line := fmt.Sprintf("%s +%-6s %s", mark, fmt.Sprintf("%#x", in.Off), in.Text)
			if in.Note != "" {
				line = fmt.Sprintf("%-56s # %s", line, in.Note)
			}
			fmt.Fprintln(w, line)
		}
	}
	for _, p := range d.Problems {
		fmt.Fprintf(w, "\nundecoded: %s%s\n", d.Name, p)
	}
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
