package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"

	"github.com/autoprof/autoprof/search"
)

// The files Write puts in an output directory.
const (
	ProfileFile  = "profile.pb.gz" // Profile, gzipped protobuf
	TextFile     = "report.txt"    // WriteText
	HTMLFile     = "report.html"   // WriteHTML
	FindingsFile = "findings.json" // Summary
	TraceFile    = "hunt.jsonl"    // WriteTrace
)

// Summary is the content of findings.json: what a reader of the findings
// needs without the whole tree.
type Summary struct {
	Meta        search.Meta      `json:"meta"`
	Findings    []search.Finding `json:"findings"`
	Overhead    search.Overhead  `json:"overhead"`
	Limitations []string         `json:"limitations,omitempty"`
}

// Summarize returns run's Summary.
func Summarize(run *search.Run) Summary {
	f := run.Findings
	if f == nil {
		f = []search.Finding{}
	}
	return Summary{Meta: run.Meta, Findings: f, Overhead: run.Overhead, Limitations: run.Limitations}
}

// Write renders run into dir, which it creates if needed: profile.pb.gz,
// report.txt, report.html, findings.json, hunt.jsonl and run.json (the run
// itself, with Format set to RunFormat, for Load). Everything is rendered
// in memory first, so that an invalid run writes nothing; each file is
// then written to a temporary file in dir and renamed over its name, so
// that no reader ever sees a truncated file. JSON files hold NaN and
// infinite values as null. On an error no temporary file
// is left behind and the files already in dir stay as they were (files
// renamed before a failing rename keep their new content).
func Write(dir string, run *search.Run) error { return WriteWith(dir, run, nil) }

// WriteWith is Write with the addresses of the run's functions (see
// Addresses; nil for none), which the profile carries and addresses.json
// keeps for Rerender.
func WriteWith(dir string, run *search.Run, addrs *Addresses) error {
	files, err := RenderWith(run, addrs)
	if err != nil {
		return err
	}
	return writeFiles(dir, files)
}

// Rerender renders the run saved at src (an output directory or its
// run.json) into dir, as Write does, without touching the saved run:
// run.json is copied byte for byte when dir is another directory (so that
// dir is a complete run too), and left alone when it is src's own. It
// returns the run.
func Rerender(src, dir string) (*search.Run, error) {
	file, err := runPath(src)
	if err != nil {
		return nil, err
	}
	saved, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	run, err := decodeRun(saved)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	addrs, err := loadAddresses(filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	files, err := RenderWith(run, addrs)
	if err != nil {
		return nil, err
	}
	same, err := sameDir(filepath.Dir(file), dir)
	if err != nil {
		return nil, err
	}
	out := files[:0]
	for _, f := range files {
		if f.Name == RunFile || f.Name == AddressesFile {
			if same {
				continue
			}
			if f.Name == RunFile {
				f.Data = saved
			}
		}
		out = append(out, f)
	}
	return run, writeFiles(dir, out)
}

// sameDir reports whether a and b are one directory; b need not exist.
func sameDir(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// File is one rendered output: its name in the output directory and its
// content.
type File struct {
	Name string
	Data []byte
}

// Render renders every output of Write in memory, in the order Write
// writes them (run.json last).
func Render(run *search.Run) ([]File, error) { return RenderWith(run, nil) }

// RenderWith is Render with addresses (see WriteWith): the profile carries
// them, and addresses.json comes before run.json.
func RenderWith(run *search.Run, addrs *Addresses) ([]File, error) {
	if err := Validate(run); err != nil {
		return nil, err
	}
	var files []File
	add := func(name string, render func(*bytes.Buffer) error) error {
		var b bytes.Buffer
		if err := render(&b); err != nil {
			return fmt.Errorf("rendering %s: %w", name, err)
		}
		files = append(files, File{name, b.Bytes()})
		return nil
	}
	steps := []struct {
		name   string
		render func(*bytes.Buffer) error
	}{
		{ProfileFile, func(b *bytes.Buffer) error {
			p, err := ProfileWith(run, addrs)
			if err != nil {
				return err
			}
			return p.Write(b)
		}},
		{TextFile, func(b *bytes.Buffer) error { return WriteText(b, run) }},
		{HTMLFile, func(b *bytes.Buffer) error { return WriteHTML(b, run) }},
		{FindingsFile, func(b *bytes.Buffer) error { return WriteJSON(b, Summarize(run)) }},
		{TraceFile, func(b *bytes.Buffer) error { return WriteTrace(b, run.Trace) }},
		{AddressesFile, func(b *bytes.Buffer) error {
			if addrs == nil {
				return errNoFile
			}
			return WriteJSON(b, addrs)
		}},
		{RunFile, func(b *bytes.Buffer) error {
			r := *run
			r.Format = RunFormat
			return WriteJSON(b, &r)
		}},
	}
	for _, s := range steps {
		if err := add(s.name, s.render); err != nil && !errors.Is(err, errNoFile) {
			return nil, err
		}
	}
	return files, nil
}

// errNoFile is what a renderer returns for an output a run does not have.
var errNoFile = errors.New("no such output")

// WriteTrace writes events as JSON Lines: one search.Event per line.
func WriteTrace(b *bytes.Buffer, events []search.Event) error {
	enc := json.NewEncoder(b)
	for _, e := range events {
		if err := enc.Encode(jsonValue(reflect.ValueOf(e))); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes v to w as indented JSON, with NaN and infinities
// (which JSON cannot hold) as null, so that a run with one undefined
// statistic is still saved; search's Finding and Interval read null back
// as what it stood for (NaN, unbounded). The saved run's files and the
// commands' --json summaries are written with it.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonValue(reflect.ValueOf(v)))
}

// writeFiles writes every file to a temporary file in dir, then renames
// them into place and syncs dir, so that the renames last; on an error it
// removes the temporary files.
func writeFiles(dir string, files []File) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the output directory: %w", err)
	}
	var temps []string
	defer func() {
		for _, t := range temps {
			if t != "" {
				os.Remove(t)
			}
		}
	}()
	for _, f := range files {
		t, err := writeTemp(dir, f)
		if err != nil {
			return err
		}
		temps = append(temps, t)
	}
	for i, f := range files {
		if err := os.Rename(temps[i], filepath.Join(dir, f.Name)); err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(dir, f.Name), err)
		}
		temps[i] = ""
	}
	return syncDir(dir)
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing the output directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing the output directory %s: %w", dir, err)
	}
	return nil
}

func writeTemp(dir string, f File) (string, error) {
	t, err := os.CreateTemp(dir, "."+f.Name+".*.tmp")
	if err != nil {
		return "", err
	}
	_, werr := t.Write(f.Data)
	if werr == nil {
		werr = t.Sync()
	}
	if err := errors.Join(werr, t.Close()); err != nil {
		os.Remove(t.Name())
		return "", fmt.Errorf("writing %s: %w", filepath.Join(dir, f.Name), err)
	}
	if err := os.Chmod(t.Name(), 0o644); err != nil {
		os.Remove(t.Name())
		return "", fmt.Errorf("writing %s: %w", filepath.Join(dir, f.Name), err)
	}
	return t.Name(), nil
}
