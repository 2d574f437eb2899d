// Package cdefines reads the numeric #defines of C source, for the tests
// that hold Go constants to the kernel-side C they mirror.
package cdefines

import (
	"bufio"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

var defineLine = regexp.MustCompile(`^#define\s+([A-Z][A-Z0-9_]*)\s+(\d+)\s*(//.*)?$`)

// Parse returns the #defines of C source whose value is a decimal number.
func Parse(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := defineLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		v, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			return nil, err
		}
		out[m[1]] = v
	}
	return out, sc.Err()
}

// File parses the C file at path.
func File(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}
