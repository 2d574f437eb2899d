package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/autoprof/autoprof/callgraph"
)

func runSyms(args []string, stdout io.Writer) error {
	fs := newFlags("syms", "[REGEX]")
	kf := addKernelFlags(fs)
	all := fs.Bool("all", false, "list every symbol, not only functions")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageError("syms takes at most one REGEX, got %q", strings.Join(pos, " "))
	}
	re := regexp.MustCompile("")
	if len(pos) == 1 {
		if re, err = regexp.Compile(pos[0]); err != nil {
			return usageError("bad REGEX %q: %v", pos[0], err)
		}
	}
	g, err := kf.open()
	if err != nil {
		return err
	}
	defer g.Close()
	syms := selectSymbols(g.Symbols(), re, *all)
	if *kf.asJSON {
		return writeJSON(stdout, symsJSON(syms))
	}
	printSyms(stdout, syms)
	return nil
}

// selectSymbols returns the functions (or, with all, every symbol) whose
// name re matches, in address order.
func selectSymbols(s *callgraph.Symbols, re *regexp.Regexp, all bool) []callgraph.Symbol {
	if all {
		return s.Match(re)
	}
	var out []callgraph.Symbol
	for _, f := range s.Functions() {
		if re.MatchString(f.Name) {
			out = append(out, f)
		}
	}
	return out
}

type symJSON struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Size    uint64 `json:"size"`
	Type    string `json:"type"`
	Module  string `json:"module,omitempty"`
	Parent  string `json:"parent,omitempty"`
}

func symsJSON(syms []callgraph.Symbol) []symJSON {
	out := make([]symJSON, len(syms))
	for i, s := range syms {
		out[i] = symJSON{Name: s.Name, Address: hexAddr(s.Addr), Size: s.Size, Type: string(s.Type), Module: s.Module, Parent: s.Parent}
	}
	return out
}

func printSyms(w io.Writer, syms []callgraph.Symbol) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tSIZE\tTYPE\tNAME [MODULE]")
	for _, s := range syms {
		fmt.Fprintf(tw, "%016x\t%d\t%c\t%s\n", s.Addr, s.Size, s.Type, s)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d symbols\n", len(syms))
}
