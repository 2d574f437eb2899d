package debuginfo

import (
	"debug/dwarf"
	"sort"
)

// Frames are the source lines of one instruction, the innermost first:
// where functions were inlined into others, one per function, each
// outer one at the line of its call of the next (pprof's order for a
// Location's lines).
type Frame struct {
	Func     string // the function's name in the source ("" where the DWARF gives none)
	File     string
	Line     int
	FuncLine int // the line declaring Func, 0 where unknown
}

// scope is a function's code, or a function inlined into it, in a
// compilation unit: its address ranges and what was inlined into it.
type scope struct {
	ranges   [][2]uint64
	origin   dwarf.Offset // its DIE, or the abstract one it is an instance of
	callFile int          // for an inlined one: where its caller called it
	callLine int
	inner    []*scope
}

func (s *scope) contains(pc uint64) bool {
	for _, r := range s.ranges {
		if pc >= r[0] && pc < r[1] {
			return true
		}
	}
	return false
}

// cuScopes is a compilation unit's functions with what was inlined into
// them, and its line table, read once.
type cuScopes struct {
	rows  []lineRow // by address: its sequences in address order
	files []*dwarf.LineFile
	top   []*scope // sorted by first address
}

// lineRow is a row of a line table; end marks the end of a sequence
// (the address after its last instruction).
type lineRow struct {
	addr uint64
	file *dwarf.LineFile
	line int
	end  bool
}

// readLines reads the line table of lr, its sequences ordered by address.
// (dwarf.LineReader.SeekPC takes the table to be in address order, which
// a module's, placed by section, need not be: a .text.unlikely sequence
// may come before the .text one at a higher address.)
func readLines(lr *dwarf.LineReader) []lineRow {
	var seqs [][]lineRow
	var cur []lineRow
	var e dwarf.LineEntry
	for lr.Next(&e) == nil {
		cur = append(cur, lineRow{addr: e.Address, file: e.File, line: e.Line, end: e.EndSequence})
		if e.EndSequence {
			seqs = append(seqs, cur)
			cur = nil
		}
	}
	sort.SliceStable(seqs, func(i, j int) bool { return seqs[i][0].addr < seqs[j][0].addr })
	var rows []lineRow
	for _, s := range seqs {
		rows = append(rows, s...)
	}
	return rows
}

// line returns the row that holds pc: the last one at or before it,
// unless that ends a sequence.
func (c *cuScopes) line(pc uint64) (lineRow, bool) {
	i := sort.Search(len(c.rows), func(i int) bool { return c.rows[i].addr > pc }) - 1
	if i < 0 || c.rows[i].end || c.rows[i].file == nil || c.rows[i].line == 0 {
		return lineRow{}, false
	}
	return c.rows[i], true
}

// scopesOf reads the functions of the compilation unit cu.
func (im *Image) scopesOf(cu *dwarf.Entry) (*cuScopes, error) {
	if c := im.units[cu.Offset]; c != nil {
		return c, nil
	}
	lr, err := im.data.LineReader(cu)
	if err != nil || lr == nil {
		return nil, err
	}
	c := &cuScopes{rows: readLines(lr), files: lr.Files()}
	r := im.data.Reader()
	r.Seek(cu.Offset)
	if _, err := r.Next(); err != nil { // the unit's own entry
		return nil, err
	}
	// stack holds, for each open entry with children, the scope its
	// children belong to (nil outside any function).
	stack := []*scope{nil}
	for len(stack) > 0 {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil || e.Tag == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		parent := stack[len(stack)-1]
		cur := parent
		if e.Tag == dwarf.TagSubprogram || e.Tag == dwarf.TagInlinedSubroutine {
			if rs, err := im.data.Ranges(e); err == nil && len(rs) > 0 {
				s := &scope{origin: e.Offset}
				for _, rg := range rs {
					s.ranges = append(s.ranges, [2]uint64{rg[0], rg[1]})
				}
				if o, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
					s.origin = o
				}
				if e.Tag == dwarf.TagInlinedSubroutine {
					s.callFile, _ = intVal(e, dwarf.AttrCallFile)
					s.callLine, _ = intVal(e, dwarf.AttrCallLine)
				}
				if parent == nil {
					c.top = append(c.top, s)
				} else {
					parent.inner = append(parent.inner, s)
				}
				cur = s
			}
		}
		if e.Children {
			stack = append(stack, cur)
		}
	}
	sort.Slice(c.top, func(i, j int) bool { return c.top[i].ranges[0][0] < c.top[j].ranges[0][0] })
	im.units[cu.Offset] = c
	return c, nil
}

// chain returns the scopes that hold pc, the outermost function first.
func (c *cuScopes) chain(pc uint64) []*scope {
	var out []*scope
	for _, s := range c.top {
		if s.contains(pc) {
			out = append(out, s)
			break
		}
	}
	for len(out) > 0 {
		var next *scope
		for _, s := range out[len(out)-1].inner {
			if s.contains(pc) {
				next = s
				break
			}
		}
		if next == nil {
			break
		}
		out = append(out, next)
	}
	return out
}

// file returns the name of file index i of the unit's line table.
func (c *cuScopes) file(i int) string {
	if i >= 0 && i < len(c.files) && c.files[i] != nil {
		return c.files[i].Name
	}
	return ""
}

// nameOf returns the source name of the function at DIE off, following
// abstract origins and declarations, and its declaring line.
func (im *Image) nameOf(off dwarf.Offset) (string, int) {
	if n, ok := im.names[off]; ok {
		return n.name, n.line
	}
	r := im.data.Reader()
	name, line, at := "", 0, off
	for range 4 { // origin → specification → declaration, at most
		r.Seek(at)
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if line == 0 {
			line, _ = intVal(e, dwarf.AttrDeclLine)
		}
		if n, ok := e.Val(dwarf.AttrName).(string); ok {
			name = n
			break
		}
		next, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			if next, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset); !ok {
				break
			}
		}
		at = next
	}
	im.names[off] = funcName{name, line}
	return name, line
}

type funcName struct {
	name string
	line int
}

func intVal(e *dwarf.Entry, a dwarf.Attr) (int, bool) {
	switch v := e.Val(a).(type) {
	case int64:
		return int(v), true
	case uint64:
		return int(v), true
	}
	return 0, false
}
