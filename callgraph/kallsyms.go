package callgraph

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrPlaceholderSystemMap is matched by errors.Is when a System.map is the
// placeholder Debian ships in its linux-image packages ("The real System.map
// is in the linux-image-<version>-dbg package").
var ErrPlaceholderSystemMap = errors.New("the System.map is a placeholder")

// ParseKallsyms parses /proc/kallsyms: "ADDRESS TYPE NAME", with a tab and
// "[MODULE]" after the symbols of modules (and of the kernel's own
// pseudo-modules: [bpf], [__builtin__ftrace], [__builtin__kprobes]). The
// format is the same from Linux 2.6 to 6.18. A table whose addresses are
// all zero (kptr_restrict, or not root) is an error.
func ParseKallsyms(r io.Reader) (*Symbols, error) {
	syms, err := parseSymbolLines(r, "kallsyms", true)
	if err != nil {
		return nil, err
	}
	return newSymbols(syms)
}

// ParseSystemMap parses a System.map as the kernel build writes it (nm
// output: "ADDRESS TYPE NAME", core kernel only). Debian's placeholder map
// gives an error wrapping ErrPlaceholderSystemMap.
func ParseSystemMap(r io.Reader) (*Symbols, error) {
	syms, err := parseSymbolLines(r, "System.map", false)
	if err != nil {
		return nil, err
	}
	return newSymbols(syms)
}

func parseSymbolLines(r io.Reader, what string, modules bool) ([]Symbol, error) {
	var syms []Symbol
	nonzero := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		if strings.Contains(text, "The real System.map is in") {
			return nil, fmt.Errorf("%s line %d: %w (the real one is in the linux-image-*-dbg package; the vmlinuz's own symbol table can stand in for it)", what, line, ErrPlaceholderSystemMap)
		}
		sym, err := parseSymbolLine(text, modules)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", what, line, err)
		}
		nonzero = nonzero || sym.Addr != 0
		syms = append(syms, sym)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if len(syms) == 0 {
		return nil, fmt.Errorf("%s: no symbols", what)
	}
	if !nonzero {
		return nil, fmt.Errorf("%s: every address is 0 (kptr_restrict hides them; read it as root)", what)
	}
	return syms, nil
}

// parseSymbolLine parses "ffffffff81000000 T _stext" and, where modules is
// set, "ffffffffc0a01000 t foo\t[mod]".
func parseSymbolLine(text string, modules bool) (Symbol, error) {
	fields := strings.Fields(text)
	if len(fields) < 3 || len(fields) > 4 || len(fields[1]) != 1 {
		return Symbol{}, fmt.Errorf("%q: want ADDRESS TYPE NAME", text)
	}
	addr, err := strconv.ParseUint(fields[0], 16, 64)
	if err != nil {
		return Symbol{}, fmt.Errorf("%q: address is not hexadecimal", text)
	}
	sym := Symbol{Addr: addr, Type: fields[1][0], Name: fields[2]}
	if len(fields) == 4 {
		m := fields[3]
		if !modules || len(m) < 3 || m[0] != '[' || m[len(m)-1] != ']' {
			return Symbol{}, fmt.Errorf("%q: want ADDRESS TYPE NAME [MODULE]", text)
		}
		sym.Module = m[1 : len(m)-1]
	}
	return sym, nil
}
