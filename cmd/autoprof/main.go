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
	"sort"
)

// command is one subcommand: its one-line summary and its entry point.
type command struct {
	summary string
	run     func(args []string, stdout io.Writer) error
}

// commands lists every subcommand; each lives in its own file.
var commands = map[string]command{
	"hunt":    {"hunt kernel bottlenecks unattended: refine instruments where the time goes, write pprof and reports", runHunt},
	"caps":    {"report which backends and text readers the running kernel allows, and why not", runCaps},
	"diff":    {"compare two saved runs context by context, with significance tests", runDiff},
	"report":  {"re-render the reports of a saved run (its run.json) without measuring", runReport},
	"syms":    {"list the kernel's functions (or all symbols) with address, size, type and module", runSyms},
	"disasm":  {"disassemble a kernel function: basic blocks, symbolized targets, candidate instrument points", runDisasm},
	"callees": {"list a kernel function's call sites: direct, tail, indirect and static calls", runCallees},
	"callers": {"list the call sites that reach a kernel function", runCallers},
	"probe":   {"insert instruments by hand (GILK manual mode) and print what they measure", runProbe},
}

// errUsage marks errors that are the user's input; main prints them and
// exits with status 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "autoprof: unknown command %q; run autoprof help for the list\n", args[0])
		return 2
	}
	if err := cmd.run(args[1:], stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "autoprof %s: %v\n", args[0], err)
		var st *exitStatus
		switch {
		case errors.Is(err, errUsage):
			return 2
		case errors.As(err, &st):
			return st.code
		}
		return 1
	}
	return 0
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
	fmt.Fprintln(w, "\nrun autoprof COMMAND -h for its flags")
}

// newFlags returns a flag set for a subcommand whose errors and help go to
// stderr; parse it with parseFlags.
func newFlags(name, argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet("autoprof "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: autoprof %s [flags] %s\n", name, argsUsage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags anywhere among the arguments, up to a "--", and
// returns the positional arguments; those after "--" come last, unparsed.
func parseFlags(fs *flag.FlagSet, args []string) (positional, rest []string, err error) {
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
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
