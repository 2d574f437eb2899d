package splice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/measure"
)

// bpfInst is one instrument of a BPF backend. Its kernel objects are released
// in the order of undo: a timer's entry link before its exit link, so
// that no frame is pushed whose return cannot be seen.
type bpfInst struct {
	s       *bpfSession
	id      uint32
	spec    instrument.Spec
	backend instrument.Backend
	// fallback says why the backends before this one refused the spec
	// ("" where the first candidate serves it).
	fallback string
	pids     []uint32

	mu     sync.Mutex
	closed bool
	undo   []func() error
	cgroup *os.File
}

// Spec returns the instrument's spec.
func (in *bpfInst) Spec() instrument.Spec { return in.spec }

// Backend names the backend that serves the instrument.
func (in *bpfInst) Backend() instrument.Backend { return in.backend }

// Fallback says why the backends before Backend refused the spec, ""
// where the first candidate serves it.
func (in *bpfInst) Fallback() string { return in.fallback }

// Close withdraws the instrument. A second call returns ErrClosed.
func (in *bpfInst) Close() error {
	r := in.s.res
	r.mu.Lock()
	if r.live != nil {
		delete(r.live, in.id)
	}
	r.mu.Unlock()
	return in.detach()
}

// detach releases the instrument's kernel objects and marks it dead in
// the model.
func (in *bpfInst) detach() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return instrument.ErrClosed
	}
	in.closed = true
	var errs []error
	for _, u := range in.undo {
		errs = append(errs, u())
	}
	in.undo = nil
	errs = append(errs, in.s.res.model.Kill(in.id, in.pids))
	if in.cgroup != nil {
		errs = append(errs, in.cgroup.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("withdrawing %s: %w", in.spec, err)
	}
	return nil
}

// insert checks spec and makes it live with the first candidate backend
// that accepts and attaches it (see candidates): a function that fentry
// cannot attach to is timed with a kprobe. On any error nothing of it
// stays in the kernel.
func (s *bpfSession) insert(ctx context.Context, spec instrument.Spec) (instrument.Instrument, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var refusals []error
	for _, b := range s.candidates(spec) {
		if err := s.checkWith(b, spec); err != nil {
			refusals = append(refusals, err)
			continue
		}
		in, err := s.register(spec, b)
		if err != nil {
			return nil, err
		}
		if err := s.attach(in); err != nil {
			s.res.mu.Lock()
			delete(s.res.live, in.id)
			s.res.mu.Unlock()
			in.detach()
			refusals = append(refusals, &refusal{fmt.Errorf("inserting %s with %s: %w", spec, b, err), true})
			continue
		}
		for _, r := range refusals {
			in.fallback = joinText(in.fallback, r.Error())
		}
		return in, nil
	}
	return nil, joinRefusals(refusals)
}

func joinText(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// register allocates the instrument's id for backend b and counts it
// live.
func (s *bpfSession) register(spec instrument.Spec, b instrument.Backend) (*bpfInst, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res.mu.Lock()
	defer s.res.mu.Unlock()
	if s.res.live == nil { // released
		return nil, instrument.ErrClosed
	}
	if len(s.res.live) >= s.maxLive {
		return nil, fmt.Errorf("%s: %w: %d instruments are live, the most allowed", spec, instrument.ErrNotSupported, s.maxLive)
	}
	if int(s.nextID) >= s.res.model.Config().MaxInstruments {
		return nil, fmt.Errorf("%s: %w: the session has used all %d instrument ids", spec, instrument.ErrNotSupported, s.nextID)
	}
	s.nextID++
	in := &bpfInst{s: s, id: s.nextID, spec: spec, backend: b}
	s.specs[in.id] = in
	s.res.live[in.id] = in
	return in, nil
}

// attach sets the instrument's filter in the model and lets its backend
// attach the programs.
func (s *bpfSession) attach(in *bpfInst) error {
	kin := measure.Instrument{Kind: modelKind(in), Cgroup: -1}
	if err := in.spec.Target.CheckPIDs(); err != nil {
		return fmt.Errorf("target %w", err)
	}
	for _, p := range in.spec.Target.PIDs {
		kin.PIDs = append(kin.PIDs, uint32(p))
	}
	in.pids = kin.PIDs
	if cg := in.spec.Target.Cgroup; cg != "" {
		f, err := openCgroup(cg)
		if err != nil {
			return err
		}
		in.cgroup = f
		kin.Cgroup = int(f.Fd())
	}
	return backends[in.backend].attach(s, in, kin)
}

func modelKind(in *bpfInst) measure.Kind {
	switch {
	case in.backend == instrument.Tracepoint:
		return measure.Syscall
	case in.spec.Kind == instrument.Count:
		return measure.Count
	case in.spec.Kind == instrument.ExitCount:
		return measure.Exit
	case in.spec.Kind == instrument.Targets:
		return measure.Targets
	}
	return measure.Timer
}

func openCgroup(path string) (*os.File, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(instrument.CgroupRoot, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("target cgroup: %w", err)
	}
	if st, err := f.Stat(); err != nil || !st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("target cgroup %s: not a cgroup directory", path)
	}
	return f, nil
}

// backend attaches the programs of one mechanism.
type backend interface {
	// available says whether the mechanism works on this kernel.
	available() error
	// attach makes in live: it sets kin in the model, then attaches, and
	// appends what undoes each step to in.undo.
	attach(s *bpfSession, in *bpfInst, kin measure.Instrument) error
}

var backends = map[instrument.Backend]backend{
	instrument.Fentry:     fentryBackend{},
	instrument.Kprobe:     kprobeBackend{},
	instrument.Tracepoint: tracepointBackend{},
}
