// Package livetext opens the running kernel's text, and its call graph
// over that text: through /proc/kcore where it can be read, else through
// the BPF reader of package kmod/textread. It stands apart from callgraph
// so that callgraph, and the packages that only read symbols through it
// (reports), link no BPF library.
package livetext

import (
	"fmt"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/kmod/textread"
)

// OpenGraph opens the running kernel's graph: symbols from /proc/kallsyms
// (as root, so that addresses show) and text from /proc/kcore or the BPF
// reader.
func OpenGraph() (*callgraph.Graph, error) {
	syms, err := callgraph.LiveSymbols()
	if err != nil {
		return nil, err
	}
	text, err := Open()
	if err != nil {
		return nil, err
	}
	return callgraph.NewGraph(syms, text, true), nil
}

// Open opens a reader of the running kernel's text: /proc/kcore
// (callgraph.KcorePath) where it can be read, else the BPF reader, the
// reader of last resort where kcore is missing or hidden (lockdown
// integrity), which needs CAP_BPF and CAP_PERFMON, or root. Live text is
// the code that runs: alternatives, static keys, static calls and ftrace
// nops are applied (and any ftrace, BPF or kprobe patch active at the
// time shows).
func Open() (callgraph.Text, error) {
	k, kerr := callgraph.OpenKcore(callgraph.KcorePath)
	if kerr == nil {
		return k, nil
	}
	b, berr := textread.Open()
	if berr == nil {
		return b, nil
	}
	return nil, fmt.Errorf("no reader of live kernel text: %w; BPF reader: %w", kerr, berr)
}
