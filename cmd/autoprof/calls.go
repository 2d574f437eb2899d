package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/autoprof/autoprof/callgraph"
)

// callsCmd is what tells the callees command from the callers command; the
// two share flags, lookup, JSON and text.
type callsCmd struct {
	name  string
	sites func(g *callgraph.Graph, fn string) ([]callgraph.Edge, error)
	// what follows "N call sites" in the text header.
	what string
	// reach says whether the command takes --depth to list reachable functions.
	reach bool
}

var (
	calleesCmd = callsCmd{name: "callees", sites: (*callgraph.Graph).Callees, reach: true}
	callersCmd = callsCmd{name: "callers", sites: (*callgraph.Graph).Callers, what: " reach it (indirect calls not counted)"}
)

func runCallees(args []string, stdout io.Writer) error { return calleesCmd.run(args, stdout) }
func runCallers(args []string, stdout io.Writer) error { return callersCmd.run(args, stdout) }

func (c callsCmd) run(args []string, stdout io.Writer) error {
	fs := newFlags(c.name, "FUNC")
	kf := addKernelFlags(fs)
	depth := 1
	if c.reach {
		fs.IntVar(&depth, "depth", 1, "also list the functions reachable in up to this many calls")
	}
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("%s takes one FUNC (a name, MODULE:NAME or 0xADDRESS)", c.name)
	}
	if depth < 1 {
		return usageError("--depth must be at least 1, got %d", depth)
	}
	g, err := kf.open()
	if err != nil {
		return err
	}
	defer g.Close()
	out, err := c.list(g, pos[0], depth)
	if err != nil {
		return err
	}
	if *kf.asJSON {
		return writeJSON(stdout, out)
	}
	c.print(stdout, out)
	return nil
}

// list gathers fn's sites and, for depth > 1, the functions reachable from it.
func (c callsCmd) list(g *callgraph.Graph, fn string, depth int) (callsJSON, error) {
	sym, err := g.Symbols().Lookup(fn)
	if err != nil {
		return callsJSON{}, funcErr(fn, err)
	}
	edges, err := c.sites(g, fn)
	if err != nil {
		return callsJSON{}, err
	}
	out := callsJSON{Function: sym.Name, Address: hexAddr(sym.Addr), Source: source(g), Sites: edgesJSON(edges)}
	if depth > 1 {
		reached, err := g.Reachable(fn, depth)
		if err != nil {
			return callsJSON{}, err
		}
		out.Reachable = reachedJSON(g.Symbols(), reached)
	}
	return out, nil
}

// callsJSON is what callees and callers print with --json.
type callsJSON struct {
	Function  string        `json:"function"`
	Address   string        `json:"address"`
	Source    string        `json:"source"`
	Sites     []siteJSON    `json:"sites"`
	Reachable []reachedItem `json:"reachable,omitempty"`
}

// siteJSON is one call site.
type siteJSON = callgraph.ListedSite

type reachedItem struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Depth   int    `json:"depth"`
	Via     string `json:"via"`
}

func edgesJSON(edges []callgraph.Edge) []siteJSON { return callgraph.ListEdges(edges) }

func reachedJSON(syms *callgraph.Symbols, reached []callgraph.Reached) []reachedItem {
	out := make([]reachedItem, len(reached))
	for i, r := range reached {
		out[i] = reachedItem{Name: r.Func.Name, Address: hexAddr(r.Func.Addr), Depth: r.Depth,
			Via: syms.Format(r.Via.From.Addr + uint64(r.Via.Off))}
	}
	return out
}

func (c callsCmd) print(w io.Writer, out callsJSON) {
	fmt.Fprintf(w, "%s at %s: %d call sites%s, %s\n", out.Function, out.Address, len(out.Sites), c.what, out.Source)
	printSites(w, out.Sites)
	if len(out.Reachable) > 0 {
		fmt.Fprintf(w, "\n%d functions reachable through direct, tail and static calls:\n", len(out.Reachable))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEPTH\tFUNCTION\tFIRST REACHED FROM")
		for _, r := range out.Reachable {
			fmt.Fprintf(tw, "%d\t%s\t%s\n", r.Depth, r.Name, r.Via)
		}
		tw.Flush()
	}
}

// printSites prints one line per site.
func printSites(w io.Writer, sites []siteJSON) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tKIND\tTARGET\tNOTE")
	for _, s := range sites {
		kind := s.Kind
		if s.Jump && s.Kind != "tail" {
			kind += " jmp"
		}
		target := s.Target
		if s.TargetOff != 0 {
			target = fmt.Sprintf("%s+%#x", s.Target, s.TargetOff)
		}
		if target == "" && s.TargetAddress != "" {
			target = s.TargetAddress
		}
		fmt.Fprintf(tw, "%s+%#x\t%s\t%s\t%s\n", s.From, s.Off, kind, target, s.Note)
	}
	tw.Flush()
}
