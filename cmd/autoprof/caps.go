//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/autoprof/autoprof/internal/features"
)

func runCaps(args []string, stdout io.Writer) error {
	fs := newFlags("caps", "")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("caps takes no arguments, got %q", strings.Join(pos, " "))
	}
	r := features.Probe()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printCaps(stdout, r)
	return nil
}

func printCaps(w io.Writer, r *features.Report) {
	s := r.System
	lockdown := s.Lockdown
	if lockdown == "" {
		lockdown = "unknown (no securityfs)"
	}
	fmt.Fprintf(w, "kernel %s, lockdown %s, perf_event_paranoid %d, kptr_restrict %d (kallsyms addresses %s), BTF %s\n",
		s.Release, lockdown, s.PerfEventParanoid, s.KptrRestrict, visible(s.KallsymsVisible), yesNo(s.BTF))
	var caps []string
	for _, name := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_MODULE"} {
		if s.Caps[name] {
			caps = append(caps, name)
		}
	}
	fmt.Fprintf(w, "capabilities held: %s\n\n", orNone(strings.Join(caps, " ")))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSTATUS\tWHY NOT / USE")
	for _, c := range r.Capabilities {
		status, note := "yes", c.Use
		if !c.Available {
			status, note = "no", c.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Kind, status, note)
	}
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func visible(b bool) string {
	if b {
		return "visible"
	}
	return "hidden"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
