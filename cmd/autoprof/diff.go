package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/autoprof/autoprof/reports"
)

// runDiff compares two saved runs: `autoprof diff BASE NEW [--json] [-o DIR]`.
func runDiff(args []string, stdout io.Writer) error {
	fs := newFlags("diff", "BASE NEW")
	out := fs.String("o", "", "write diff.txt, diff.html, diff.json, base.pb.gz and new.pb.gz into this directory")
	asJSON := fs.Bool("json", false, "print diff.json instead of diff.txt")
	alpha := fs.Float64("alpha", 0.05, "false discovery rate of the Benjamini–Hochberg correction")
	minShare := fs.Float64("min-share", 0.1, "smallest change of a time per operation worth reporting, in percent of the base's time per operation")
	minRel := fs.Float64("min-relative", 5, "smallest change worth reporting, in percent of the base value")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError("diff takes two run directories (or run.json files), BASE and NEW, got %q", strings.Join(pos, " "))
	}
	if *alpha <= 0 || *alpha >= 1 || *minShare < 0 || *minRel < 0 {
		return usageError("--alpha must be in (0, 1) and the margins not negative")
	}
	base, err := reports.Load(pos[0])
	if err != nil {
		return fmt.Errorf("base: %w", err)
	}
	new, err := reports.Load(pos[1])
	if err != nil {
		return fmt.Errorf("new: %w", err)
	}
	opts := reports.DiffOptions{Alpha: *alpha, MinShare: *minShare / 100, MinRelative: *minRel / 100}
	// A margin of zero is asked for explicitly: the options' zero value
	// means the default.
	if *minShare == 0 {
		opts.MinShare = -1
	}
	if *minRel == 0 {
		opts.MinRelative = -1
	}
	c, err := reports.Diff(base, new, opts)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := reports.WriteDiff(*out, c, base, new); err != nil {
			return err
		}
	}
	if *asJSON {
		return reports.WriteDiffJSON(stdout, c)
	}
	if err := reports.WriteDiffText(stdout, c); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(stdout, "\nwritten to %s: %s, %s, %s; compare in pprof: go tool pprof -diff_base %s/%s %s/%s\n",
			*out, reports.DiffTextFile, reports.DiffHTMLFile, reports.DiffJSONFile, *out, reports.DiffBaseProfile, *out, reports.DiffNewProfile)
	}
	return nil
}
