// Command autoprof hunts bottlenecks in a running Linux kernel.
//
// This package only parses the command line, calls library code and prints.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
)

// command is one subcommand: its one-line summary and its entry point,
// which writes its output to stdout and what it tells the user meanwhile
// (progress, warnings) to stderr.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

// quiet adapts a command that tells the user nothing while it runs.
func quiet(run func(args []string, stdout io.Writer) error) func(args []string, stdout, stderr io.Writer) error {
	return func(args []string, stdout, _ io.Writer) error { return run(args, stdout) }
}

// commands lists every subcommand; each lives in its own file.
var commands = map[string]command{
	"hunt":    {"hunt kernel bottlenecks unattended: refine instruments where the time goes, write pprof and reports", runHunt},
	"caps":    {"report which backends and text readers the running kernel allows, and why not", quiet(runCaps)},
	"diff":    {"compare two saved runs context by context, with significance tests", quiet(runDiff)},
	"report":  {"re-render the reports of a saved run (its run.json) without measuring", quiet(runReport)},
	"syms":    {"list the kernel's functions (or all symbols) with address, size, type and module", quiet(runSyms)},
	"disasm":  {"disassemble a kernel function: basic blocks, symbolized targets, candidate instrument points", quiet(runDisasm)},
	"callees": {"list a kernel function's call sites: direct, tail, indirect and static calls", quiet(runCallees)},
	"callers": {"list the call sites that reach a kernel function", quiet(runCallers)},
	"probe":   {"insert instruments by hand (GILK manual mode) and print what they measure", runProbe},
	"ui":      {"serve GILK's GUI in the browser: symbols, control-flow graphs, experiments with live data", quiet(runUI)},
}

// errUsage marks errors that are the user's input; main prints them and
// exits with status 2. Every other error (the kernel refused, a file could
// not be written) exits with status 1.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit status. Help goes
// to stdout (status 0), errors to stderr as one line.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "help":
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		args = []string{args[1], "-h"}
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version())
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "autoprof: unknown command %q; run autoprof help for the list\n", args[0])
		return 2
	}
	err := cmd.run(args[1:], stdout, stderr)
	var help *helpRequest
	if errors.As(err, &help) {
		help.print(stdout)
		return 0
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "autoprof %s: %s\n", args[0], errorText(err))
	var st *exitStatus
	switch {
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, &st):
		return st.code
	}
	return 1
}

// errorText is err's message without the "usage: " that marks bad input
// (the exit status says it).
func errorText(err error) string {
	return strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: autoprof COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nautoprof help COMMAND (or autoprof COMMAND -h) lists a command's flags; autoprof --version prints the version")
}

// buildCommit is the commit the binary was built from, set by make build
// (-ldflags -X) for builds without the go command's VCS stamp.
var buildCommit string

// version is "autoprof VERSION (commit REV[+dirty], GOVERSION)" from the
// build information the go command embeds, or buildCommit.
func version() string {
	v, rev, dirty, gov := "(devel)", buildCommit, false, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value[:min(len(s.Value), 12)]
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if rev == "" {
		return fmt.Sprintf("autoprof %s (%s)", v, gov)
	}
	if dirty {
		rev += "+dirty"
	}
	return fmt.Sprintf("autoprof %s (commit %s, %s)", v, rev, gov)
}

// newFlags returns a flag set for a subcommand; parse it with parseFlags,
// which turns -h into a helpRequest and a bad flag into a one-line usage
// error.
func newFlags(name, argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet("autoprof "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), strings.TrimSpace("usage: autoprof "+name+" [flags] "+argsUsage)) }
	return fs
}

// helpRequest is what parseFlags returns for -h: run prints the command's
// usage and flags to stdout and exits 0.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string { return "help requested" }
func (h *helpRequest) Unwrap() error { return flag.ErrHelp }

func (h *helpRequest) print(w io.Writer) {
	h.fs.SetOutput(w)
	defer h.fs.SetOutput(io.Discard)
	h.fs.Usage()
	if c, ok := commands[strings.TrimPrefix(h.fs.Name(), "autoprof ")]; ok {
		fmt.Fprintf(w, "\n%s\n\nflags:\n", c.summary)
	}
	h.fs.PrintDefaults()
}

// parseFlags parses flags anywhere among the arguments, up to a "--", and
// returns the positional arguments; those after "--" come last, unparsed.
func parseFlags(fs *flag.FlagSet, args []string) (positional, rest []string, err error) {
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, &helpRequest{fs}
			}
			return nil, nil, usageError("%v (%s -h lists the flags)", err, fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			return positional, args[1:], nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	return positional, nil, nil
}

// exitStatus is an error that sets autoprof's exit status.
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string { return e.err.Error() }
func (e *exitStatus) Unwrap() error { return e.err }

// usageError returns an error for bad command-line input; format may
// wrap an error with %w.
func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}
