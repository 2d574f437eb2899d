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

// The listing's types, as disasm's JSON and text use them.
type (
	disasmJSON = callgraph.Listing
	blockJSON  = callgraph.ListedBlock
)

func disassemble(g *callgraph.Graph, f *callgraph.Function, intel bool) disasmJSON {
	return callgraph.NewListing(g, f, intel)
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
