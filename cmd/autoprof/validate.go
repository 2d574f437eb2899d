//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/splice"
)

// The checks every command that measures makes of its input, in one
// place, before anything is opened or attached: a bad input is a usage
// error (status 2) naming the flag; what the kernel does not allow is a
// runtime error (status 1) with caps' reason.

// targetFlags are --pid and --cgroup, which mean the same in every
// command.
type targetFlags struct{ pids, cgroup string }

func addTargetFlags(fs *flag.FlagSet) *targetFlags {
	tf := &targetFlags{}
	fs.StringVar(&tf.pids, "pid", "", "measure these processes (comma-separated pids), every thread of each")
	fs.StringVar(&tf.cgroup, "cgroup", "", "measure the tasks of this cgroup v2 directory and its descendants (relative: below "+instrument.CgroupRoot+")")
	return tf
}

// target parses and checks the flags: every pid a live process, the
// cgroup a cgroup v2 directory.
func (tf *targetFlags) target() (instrument.Target, error) {
	var t instrument.Target
	if tf.pids != "" {
		pids, err := splice.ParsePIDs(tf.pids)
		if err != nil {
			return t, usageError("--pid %v", err)
		}
		t.PIDs = pids
	}
	t.Cgroup = tf.cgroup
	for _, p := range t.PIDs {
		if err := splice.CheckTarget(instrument.Target{PIDs: []int{p}}); err != nil {
			return t, usageError("--pid %d: no such process", p)
		}
	}
	if t.Cgroup != "" {
		if err := splice.CheckTarget(instrument.Target{Cgroup: t.Cgroup}); err != nil {
			return t, usageError("--cgroup %s: not a cgroup v2 directory", t.Cgroup)
		}
	}
	return t, nil
}

// set reports whether either flag was given.
func (tf *targetFlags) set() bool { return tf.pids != "" || tf.cgroup != "" }

// checkDuration refuses a negative duration, and one below least where
// least is positive.
func checkDuration(flagName string, d, least time.Duration) error {
	switch {
	case d < 0:
		return usageError("--%s %v: must not be negative", flagName, d)
	case least > 0 && d < least:
		return usageError("--%s %v: want at least %v", flagName, d, least)
	}
	return nil
}

// checkBackend refuses a --backend name that is no backend (usage), and a
// backend the kernel does not allow (runtime, with caps' reason).
func checkBackend(name instrument.Backend) error {
	if name == "" {
		return nil
	}
	if _, err := instrument.ParseBackend(string(name)); err != nil {
		return usageError("--%v", err)
	}
	if err := features.Backend(string(name)); err != nil {
		return fmt.Errorf("--backend %s: %w (autoprof caps lists what this kernel allows)", name, err)
	}
	return nil
}

// liveSymbols reads the running kernel's symbol table; tests replace it.
var liveSymbols = callgraph.LiveSymbols

// checkFuncs refuses names that are not functions of the running kernel:
// what flagName says ("--root", "SPEC") names the input.
func checkFuncs(flagName string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	syms, err := liveSymbols()
	if err != nil {
		return fmt.Errorf("reading the kernel's symbols: %w", err)
	}
	for _, n := range names {
		if _, err := syms.Func(n); errors.Is(err, callgraph.ErrUnknownFunction) {
			return usageError("%s %s: no such kernel function (autoprof syms REGEX lists them)", flagName, n)
		}
	}
	return nil
}

// outDir is an output directory, made ready before anything is measured
// so that no measurement is lost to a directory that cannot be written.
type outDir struct {
	path    string
	created bool
}

// prepareOutDir creates dir where it does not exist (its parent must) and
// checks that a file can be written in it.
func prepareOutDir(dir string) (*outDir, error) {
	if dir == "" {
		return nil, usageError("-o: empty directory name")
	}
	o := &outDir{path: dir}
	st, err := os.Stat(dir)
	switch {
	case err == nil && !st.IsDir():
		return nil, usageError("-o %s: not a directory", dir)
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(filepath.Clean(dir))
		if st, err := os.Stat(parent); err != nil || !st.IsDir() {
			return nil, usageError("-o %s: its parent %s is not a directory", dir, parent)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, usageError("-o %s: %v", dir, errors.Unwrap(err))
		}
		o.created = true
	case err != nil:
		return nil, usageError("-o %s: %v", dir, errors.Unwrap(err))
	}
	f, err := os.CreateTemp(dir, ".autoprof-write-check-*")
	if err != nil {
		o.abandon()
		return nil, usageError("-o %s: cannot write in it: %v", dir, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return o, nil
}

// abandon removes the directory if prepareOutDir created it and nothing
// was written in it, so that a run that fails leaves nothing behind.
func (o *outDir) abandon() {
	if o != nil && o.created {
		os.Remove(o.path) // fails, as it should, where something was written
	}
}
