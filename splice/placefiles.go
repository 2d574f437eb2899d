package splice

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// addrRange is [Start, End) of kernel text with the symbol that names it.
type addrRange struct {
	Start, End uint64
	Name       string
}

// parseKprobeBlacklist parses debugfs kprobes/blacklist: one line per
// refused range, "0xffffffff81000000-0xffffffff81000040\tsymbol" (Linux
// 4.19 and later, as root; lines of modules end in "[module]"). The ranges
// come back sorted by start.
func parseKprobeBlacklist(r io.Reader) ([]addrRange, error) {
	var out []addrRange
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		a, err1 := strconv.ParseUint(strings.TrimPrefix(lo, "0x"), 16, 64)
		b, err2 := strconv.ParseUint(strings.TrimPrefix(hi, "0x"), 16, 64)
		if !ok || err1 != nil || err2 != nil || len(f) < 2 || b < a {
			return nil, fmt.Errorf("kprobe blacklist line %d: %q: want 0xSTART-0xEND SYMBOL", line, sc.Text())
		}
		out = append(out, addrRange{Start: a, End: b, Name: f[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the kprobe blacklist: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// rangeHolding returns a range of rs (sorted by start) holding addr.
// Ranges may nest (a symbol and its aliases), so it looks back a few.
func rangeHolding(rs []addrRange, addr uint64) (addrRange, bool) {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Start > addr }) - 1
	for k := i; k >= 0 && k > i-8; k-- {
		if addr < rs[k].End {
			return rs[k], true
		}
	}
	return addrRange{}, false
}

// parseFilterFunctions parses tracefs available_filter_functions: one
// function per line, "name" or "name [module]". Only names listed there
// can be traced by ftrace, and so by BPF trampolines.
func parseFilterFunctions(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case strings.HasPrefix(f[0], "0x") || strings.HasPrefix(f[0], "ffff"):
			// available_filter_functions_addrs: "ADDR name [module]"
			if len(f) > 1 {
				out[f[1]] = true
			}
		default:
			out[f[0]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading available_filter_functions: %w", err)
	}
	return out, nil
}
