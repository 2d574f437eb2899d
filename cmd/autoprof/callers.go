package main

import (
	"fmt"
	"io"
)

func runCallers(args []string, stdout io.Writer) error {
	fs := newFlags("callers", "FUNC")
	kf := addKernelFlags(fs)
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("callers takes one FUNC (a name, MODULE:NAME or 0xADDRESS)")
	}
	g, err := kf.open()
	if err != nil {
		return err
	}
	defer g.Close()
	fn, err := g.Symbols().Lookup(pos[0])
	if err != nil {
		return funcErr(pos[0], err)
	}
	edges, err := g.Callers(pos[0])
	if err != nil {
		return err
	}
	out := callersJSON{Function: fn.Name, Address: hexAddr(fn.Addr), Source: source(g), Sites: edgesJSON(edges)}
	if *kf.asJSON {
		return writeJSON(stdout, out)
	}
	printCallers(stdout, out)
	return nil
}

type callersJSON struct {
	Function string     `json:"function"`
	Address  string     `json:"address"`
	Source   string     `json:"source"`
	Sites    []siteJSON `json:"sites"`
}

func printCallers(w io.Writer, c callersJSON) {
	fmt.Fprintf(w, "%s at %s: %d call sites reach it (indirect calls not counted), %s\n", c.Function, c.Address, len(c.Sites), c.Source)
	printSites(w, c.Sites)
}
