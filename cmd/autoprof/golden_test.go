package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n%s", path, got)
	}
}

// fixtureDir holds the hand-assembled kernel of package callgraph's tests.
const fixtureDir = "../../callgraph/testdata/fixture"

// useFixture makes the commands read the fixture kernel, as if it were
// running (so static calls are resolved).
func useFixture(t *testing.T) {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureDir, "kallsyms"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := callgraph.ParseKallsyms(f)
	if err != nil {
		t.Fatal(err)
	}
	text := readFixtureHex(t, filepath.Join(fixtureDir, "text.hex"))
	saved := openGraph
	openGraph = func(*kernelFlags) (*callgraph.Graph, error) { return callgraph.NewGraph(syms, text, true), nil }
	t.Cleanup(func() { openGraph = saved })
}

func readFixtureHex(t *testing.T, path string) *callgraph.MemText {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := &callgraph.MemText{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		a, h, _ := strings.Cut(sc.Text(), " ")
		addr, err := strconv.ParseUint(a, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		data, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		m.Add(addr, data)
	}
	return m
}
