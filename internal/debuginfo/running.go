package debuginfo

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Running finds source lines in the running kernel: the debug file of
// the core kernel and of each module, found by the build ID the kernel
// shows for it, opened on first use.
type Running struct {
	search Search
	text   uint64 // the running kernel's _stext
	images map[string]*Image
	errs   map[string]error
}

// NewRunning returns the source lines of the running kernel, whose _stext
// is at text, from the debug files s finds.
func NewRunning(s Search, text uint64) *Running {
	return &Running{search: s, text: text, images: map[string]*Image{}, errs: map[string]error{}}
}

// Lines returns the source lines of addr in module ("" for the core
// kernel), the innermost first (see Frame).
func (r *Running) Lines(module string, addr uint64) ([]Frame, error) {
	im, err := r.image(module)
	if err != nil {
		return nil, err
	}
	return im.Lookup(addr)
}

// Missing returns, by module ("" for the core kernel), why no debug
// file serves it.
func (r *Running) Missing() map[string]error { return r.errs }

func (r *Running) image(module string) (*Image, error) {
	if im := r.images[module]; im != nil {
		return im, nil
	}
	if err := r.errs[module]; err != nil {
		return nil, err
	}
	im, err := r.open(module)
	if err != nil {
		r.errs[module] = err
		return nil, err
	}
	r.images[module] = im
	return im, nil
}

func (r *Running) open(module string) (*Image, error) {
	if module == "" {
		id, err := KernelBuildID()
		if err != nil {
			return nil, fmt.Errorf("the kernel's build ID: %w", err)
		}
		path, err := r.search.Find(id)
		if err != nil {
			return nil, fmt.Errorf("the kernel: %w", err)
		}
		return Open(path, Load{Text: r.text})
	}
	id, err := ModuleBuildID(module)
	if err != nil {
		return nil, fmt.Errorf("module %s's build ID: %w", module, err)
	}
	path, err := r.search.Find(id)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", module, err)
	}
	secs, err := ModuleSections(module)
	if err != nil {
		return nil, err
	}
	return Open(path, Load{Sections: secs})
}

// ModuleSections reads where the running kernel put a module's sections
// (/sys/module/MODULE/sections/, whose addresses only root sees).
func ModuleSections(module string) (map[string]uint64, error) {
	dir := filepath.Join("/sys/module", module, "sections")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("module %s's sections: %w", module, err)
	}
	out := map[string]uint64{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		a, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64)
		if err == nil && a != 0 {
			out[e.Name()] = a
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("module %s's sections: no address readable in %s (root sees them)", module, dir)
	}
	return out, nil
}
