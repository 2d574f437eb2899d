package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/autoprof/autoprof/reports"
)

// runReport re-renders a saved run: `autoprof report DIR [-o OUT] [--json]`.
func runReport(args []string, stdout io.Writer) error {
	fs := newFlags("report", "DIR")
	out := fs.String("o", "", "write the outputs into this directory instead of DIR")
	asJSON := fs.Bool("json", false, "print findings.json instead of report.txt")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("report takes one run directory (or its run.json), got %q", strings.Join(pos, " "))
	}
	dir := *out
	if dir == "" {
		dir = pos[0]
		if st, err := os.Stat(dir); err == nil && !st.IsDir() {
			dir = filepath.Dir(dir)
		}
	}
	run, err := reports.Rerender(pos[0], dir)
	if err != nil {
		return err
	}
	if *asJSON {
		return reports.WriteJSON(stdout, reports.Summarize(run))
	}
	return reports.WriteText(stdout, run)
}
