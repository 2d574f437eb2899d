//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// cpuProfile is autoprof's own CPU profile (--cpuprofile), written to a
// temporary file beside its path and renamed there when the command ends
// well: a failed command leaves no profile behind.
type cpuProfile struct {
	path string
	tmp  *os.File
}

// addCPUProfileFlag adds --cpuprofile to a command's flags.
func addCPUProfileFlag(fs *flag.FlagSet) *string {
	return fs.String("cpuprofile", "", "write autoprof's own CPU profile to this file (go tool pprof opens it): what the controller costs; hunt labels its samples by phase and step (go tool pprof -tags FILE; -tagfocus=phase=rounds)")
}

// startCPUProfile starts profiling autoprof into path; nil where path is
// empty.
func startCPUProfile(path string) (*cpuProfile, error) {
	if path == "" {
		return nil, nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, usageError("--cpuprofile %q: is a directory; give a file name", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, usageError("--cpuprofile %q: %v; give a file in a writable directory", path, err)
	}
	if err := pprof.StartCPUProfile(tmp); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return &cpuProfile{path: path, tmp: tmp}, nil
}

// profiled runs command (hunt or probe) under autoprof's own CPU profile
// at path (--cpuprofile; none where path is empty). The profile is kept
// where the command's outputs stand (it succeeded, or the hunted command
// failed with its own exit status) and removed otherwise; one that
// cannot be written is the command's error, or is said beside the
// command's own. Where profiling cannot start, the command does not run
// and dir is abandoned.
func profiled(command, path string, dir *outDir, run func() error) error {
	prof, err := startCPUProfile(path)
	if err != nil {
		dir.abandon()
		return err
	}
	err = run()
	var st *exitStatus
	perr := prof.finish(err == nil || errors.As(err, &st))
	switch {
	case perr == nil:
		return err
	case err == nil:
		return perr
	}
	fmt.Fprintf(os.Stderr, "autoprof %s: %v\n", command, perr)
	return err
}

// finish stops profiling and puts the profile at its path, or, where ok is
// false, removes it. It may be called again, and on nil.
func (p *cpuProfile) finish(ok bool) error {
	if p == nil || p.tmp == nil {
		return nil
	}
	pprof.StopCPUProfile()
	tmp := p.tmp
	p.tmp = nil
	err := tmp.Close()
	if ok && err == nil {
		err = os.Rename(tmp.Name(), p.path)
	}
	if !ok || err != nil {
		os.Remove(tmp.Name())
	}
	if err != nil {
		return fmt.Errorf("writing the CPU profile %s: %w", p.path, err)
	}
	return nil
}
