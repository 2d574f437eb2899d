package ui

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/splice"
)

// groupedSymbol is one function of the symbol table with its group.
type groupedSymbol struct {
	sym   callgraph.Symbol
	group string
}

// symbols returns every function of the kernel and its modules, by name,
// grouped once; every name of a function is listed (__x64_sys_getppid
// and __ia32_sys_getppid may be one function).
func (s *Server) symbols() []groupedSymbol {
	s.symsOnce.Do(func() {
		syms := s.graph.Symbols()
		for _, f := range syms.Functions() {
			for _, a := range syms.Aliases(f.Addr) {
				if !a.IsPadding() && !a.IsMarker() {
					s.syms = append(s.syms, groupedSymbol{a, s.grouper.Group(a)})
				}
			}
		}
		sort.SliceStable(s.syms, func(i, j int) bool { return s.syms[i].sym.Name < s.syms[j].sym.Name })
	})
	return s.syms
}

// symbolRow is one function in /api/symbols.
type symbolRow struct {
	Name    string `json:"name"`
	Spec    string `json:"spec"` // MODULE:NAME for a module's function, as specs name it
	Address string `json:"address"`
	Size    uint64 `json:"size"`
	Module  string `json:"module,omitempty"`
	Group   string `json:"group"`
	// Backends says, for an entry timer (FUNC:timer), what each backend
	// says: "" where it could insert it, else why not.
	Backends map[string]string `json:"backends"`
}

// groupCount is how many functions of a group match.
type groupCount struct {
	Group string `json:"group"`
	Count int    `json:"count"`
}

// symbolsReply is /api/symbols' answer.
type symbolsReply struct {
	Total  int          `json:"total"` // functions that match q (all groups)
	Groups []groupCount `json:"groups"`
	Shown  []symbolRow  `json:"symbols"` // the first limit of those in group
}

// maxRows caps /api/symbols' rows.
const maxRows = 1000

// handleSymbols lists the functions whose name contains q (or matches it,
// with regex=1), with per-group counts; group selects one group's.
func (s *Server) handleSymbols(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	match, err := matcher(q.Get("q"), q.Get("regex") == "1")
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	limit := 200
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 {
		limit = min(l, maxRows)
	}
	group := q.Get("group")
	counts := map[string]int{}
	var rep symbolsReply
	var shown []callgraph.Symbol
	var groups []string
	for _, gs := range s.symbols() {
		if !match(gs.sym.Name) {
			continue
		}
		rep.Total++
		counts[gs.group]++
		if (group == "" || gs.group == group) && len(shown) < limit {
			shown, groups = append(shown, gs.sym), append(groups, gs.group)
		}
	}
	for _, g := range Groups {
		rep.Groups = append(rep.Groups, groupCount{g, counts[g]})
	}
	rep.Shown = make([]symbolRow, len(shown))
	for i, sym := range shown {
		rep.Shown[i] = s.row(sym, groups[i])
	}
	writeJSON(w, rep)
}

// matcher returns a test of names: substring (case-insensitive) or regex.
func matcher(q string, regex bool) (func(string) bool, error) {
	if regex {
		re, err := regexp.Compile(q)
		if err != nil {
			return nil, fmt.Errorf("bad regex %q: %w", q, err)
		}
		return re.MatchString, nil
	}
	q = strings.ToLower(q)
	return func(name string) bool { return strings.Contains(strings.ToLower(name), q) }, nil
}

// specName is how a spec names sym: MODULE:NAME for a module's function.
func specName(sym callgraph.Symbol) string {
	if sym.Module != "" {
		return sym.Module + ":" + sym.Name
	}
	return sym.Name
}

func (s *Server) row(sym callgraph.Symbol, group string) symbolRow {
	spec := instrument.Spec{Point: instrument.Point{Func: specName(sym)}, Kind: instrument.Timer}
	return symbolRow{Name: sym.Name, Spec: specName(sym), Address: fmt.Sprintf("%#x", sym.Addr), Size: sym.Size,
		Module: sym.Module, Group: group, Backends: s.verdicts(spec)}
}

// verdicts asks every backend about spec (splice.Session.CheckOn): ""
// where it could insert it, else why not.
func (s *Server) verdicts(spec instrument.Spec) map[string]string {
	out := map[string]string{}
	chk, err := s.checker()
	for _, b := range instrument.Backends {
		name := string(b)
		switch {
		case err != nil:
			out[name] = "no session to check with: " + err.Error()
		default:
			if err := chk.CheckOn(b, spec); err != nil {
				out[name] = err.Error()
				if errors.Is(err, splice.ErrNotChecked) {
					out[name] = "? " + out[name]
				}
			} else {
				out[name] = ""
			}
		}
	}
	return out
}

// handleCheck answers what every backend says of one spec
// (FUNC[+OFF]:KIND, as probe takes it): "" where it could insert it, else
// why not.
func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	spec, err := instrument.ParseSpec(r.URL.Query().Get("spec"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, map[string]any{"spec": spec.String(), "backends": s.verdicts(spec)})
}

// handleCaps answers what autoprof caps --json prints.
func (s *Server) handleCaps(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, features.Probe())
}

// functionReply is /api/function's answer.
type functionReply struct {
	callgraph.Listing
	Spec  string `json:"spec"`
	Group string `json:"group"`
	// Backends is what each backend says of an entry timer (see
	// symbolRow).
	Backends map[string]string `json:"backends"`
	// Observed are the targets the experiments captured at the
	// function's indirect sites, by the site's offset.
	Observed map[string][]observedTarget `json:"observed,omitempty"`
}

// handleFunction lists a function as autoprof disasm --json does.
func (s *Server) handleFunction(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	f, err := s.graph.Function(name)
	if err != nil {
		httpError(w, http.StatusNotFound, fmt.Errorf("function %s: %w", name, err))
		return
	}
	row := s.row(f.Sym, s.grouper.Group(f.Sym))
	writeJSON(w, functionReply{Listing: callgraph.NewListing(s.graph, f, r.URL.Query().Get("intel") == "1"),
		Spec: row.Spec, Group: row.Group, Backends: row.Backends, Observed: s.targets.of(row.Spec)})
}

// callsReply is /api/calls' answer: what autoprof callees or callers
// --json lists.
type callsReply struct {
	Function string                 `json:"function"`
	Sites    []callgraph.ListedSite `json:"sites"`
}

// handleCalls lists a function's callees (dir=callees) or callers
// (dir=callers; the first call decodes the whole kernel).
func (s *Server) handleCalls(w http.ResponseWriter, r *http.Request) {
	name, dir := r.URL.Query().Get("name"), r.URL.Query().Get("dir")
	list := s.graph.Callees
	switch dir {
	case "callees":
	case "callers":
		list = s.graph.Callers
	default:
		httpError(w, http.StatusBadRequest, fmt.Errorf("dir %q: want callees or callers", dir))
		return
	}
	edges, err := list(name)
	if err != nil {
		httpError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, callsReply{Function: name, Sites: callgraph.ListEdges(edges)})
}
