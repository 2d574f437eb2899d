// Command gentree writes the aptree kernel module for a range of seeds:
//
//	gentree -seeds 1-20 -o DIR
//
// DIR gets aptree.c and Kbuild (build with make -C KDIR M=DIR modules)
// and trees.json, the generated trees, which the tests read back.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/autoprof/autoprof/internal/calltree"
)

func main() {
	seeds := flag.String("seeds", "1-20", "seeds of the trees: N, N-M or a comma-separated list of both")
	out := flag.String("o", "", "directory to write the module's source to")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: gentree -seeds 1-20 -o DIR")
		os.Exit(2)
	}
	list, err := calltree.ParseSeeds(*seeds)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gentree: -seeds: %v\n", err)
		os.Exit(2)
	}
	if err := write(*out, list); err != nil {
		fmt.Fprintf(os.Stderr, "gentree: %v\n", err)
		os.Exit(1)
	}
}

// write writes the module's files, leaving those that would not change
// alone so that make does not rebuild the module for nothing.
func write(dir string, seeds []uint64) error {
	trees := make([]*calltree.Tree, len(seeds))
	for i, s := range seeds {
		trees[i] = calltree.Generate(s)
	}
	var c bytes.Buffer
	if err := calltree.Module(&c, trees); err != nil {
		return err
	}
	js, err := json.MarshalIndent(trees, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{
		calltree.ModuleName + ".c": c.Bytes(),
		"Kbuild":                   []byte(calltree.Kbuild),
		"trees.json":               append(js, '\n'),
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
