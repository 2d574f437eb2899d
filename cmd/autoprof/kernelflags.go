package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/callgraph/livetext"
)

// kernelFlags are the flags of the commands that read a kernel's symbols
// and text: the running kernel by default, or a kernel image offline.
type kernelFlags struct {
	vmlinuz   *string
	systemMap *string
	kcore     *string
	asJSON    *bool
}

func addKernelFlags(fs *flag.FlagSet) *kernelFlags {
	return &kernelFlags{
		vmlinuz:   fs.String("vmlinuz", "", "analyse this kernel image (vmlinuz or vmlinux) offline instead of the running kernel"),
		systemMap: fs.String("system-map", "", "with --vmlinuz: its System.map (default: the symbol table compiled into the image)"),
		kcore:     fs.String("kcore", "", "read the running kernel's text from this kcore file (default: "+callgraph.KcorePath+", else the BPF reader)"),
		asJSON:    fs.Bool("json", false, "print JSON"),
	}
}

// open checks the flags and opens the graph they select.
func (k *kernelFlags) open() (*callgraph.Graph, error) {
	switch {
	case *k.vmlinuz != "" && *k.kcore != "":
		return nil, usageError("--kcore reads the running kernel, --vmlinuz an image: give one of them")
	case *k.vmlinuz == "" && *k.systemMap != "":
		return nil, usageError("--system-map needs --vmlinuz")
	}
	return openGraph(k)
}

// openGraph opens the graph that checked flags select. Tests replace it.
var openGraph = func(k *kernelFlags) (*callgraph.Graph, error) {
	switch {
	case *k.vmlinuz != "":
		return callgraph.OpenOffline(*k.vmlinuz, *k.systemMap)
	case *k.kcore != "":
		syms, err := callgraph.LiveSymbols()
		if err != nil {
			return nil, err
		}
		text, err := callgraph.OpenKcore(*k.kcore)
		if err != nil {
			return nil, err
		}
		return callgraph.NewGraph(syms, text, true), nil
	}
	return livetext.OpenGraph()
}

// source describes where the graph's text comes from, for headers.
func source(g *callgraph.Graph) string { return g.Source() }

// funcErr turns a lookup of a FUNC argument that names no kernel function
// into a usage error, as checkFuncs words it; other errors pass.
func funcErr(arg string, err error) error {
	if errors.Is(err, callgraph.ErrUnknownFunction) {
		return usageError("%s: no such kernel function (autoprof syms REGEX lists them)", arg)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// hexAddr formats an address for JSON (JSON numbers lose 64-bit precision).
func hexAddr(v uint64) string { return fmt.Sprintf("%#x", v) }
