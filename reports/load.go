package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/autoprof/autoprof/search"
)

// RunFormat is the value of search.Run.Format that this package writes
// and reads. autoprof-run/2 records each round's target time
// (search.RoundSample.TargetNs), which Diff needs to compare times per
// operation; runs of autoprof-run/1 are refused (ErrOldRun).
const RunFormat = "autoprof-run/2"

// oldFormats are the formats of earlier autoprofs, which Load refuses
// with ErrOldRun.
var oldFormats = []string{"autoprof-run/1"}

// RunFile is the name of the saved run in an output directory.
const RunFile = "run.json"

// MaxRounds is the most rounds a run may have (48 days of 250 ms
// rounds); a larger count is taken for corruption.
const MaxRounds = 1 << 24

// ErrInvalidRun is matched by errors.Is when a saved run is corrupt,
// truncated, of another format, or inconsistent.
var ErrInvalidRun = errors.New("not a valid autoprof run")

// ErrOldRun is matched by errors.Is when a saved run was written by an
// earlier autoprof, in a format this one no longer reads. It wraps
// ErrInvalidRun.
var ErrOldRun = fmt.Errorf("re-run the hunt with this autoprof: %w", ErrInvalidRun)

// Load reads a saved run. path is an output directory of autoprof hunt (or
// of Write), its run.json, or any other file in that directory (such as
// profile.pb.gz), in which case the run.json beside it is read. A corrupt,
// truncated or inconsistent file gives a one-line error that names it and
// wraps ErrInvalidRun.
func Load(path string) (*search.Run, error) {
	file, err := runPath(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	run, err := decodeRun(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return run, nil
}

// runPath finds the run.json that path names.
func runPath(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		file := filepath.Join(path, RunFile)
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s: no %s: not an autoprof output directory: %w", path, RunFile, ErrInvalidRun)
		}
		return file, nil
	}
	if filepath.Base(path) != RunFile {
		beside := filepath.Join(filepath.Dir(path), RunFile)
		if _, err := os.Stat(beside); err == nil {
			return beside, nil
		}
		if isGzip(path) {
			return "", fmt.Errorf("%s: a profile without the %s beside it: the per-round data that comparisons need is in %s: %w", path, RunFile, RunFile, ErrInvalidRun)
		}
	}
	return path, nil
}

func isGzip(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [2]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && magic == [2]byte{0x1f, 0x8b}
}

// decodeRun parses and validates run.json's content.
func decodeRun(data []byte) (*search.Run, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("empty file: %w", ErrInvalidRun)
	}
	if err := refuseOld(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var run search.Run
	if err := dec.Decode(&run); err != nil {
		return nil, fmt.Errorf("%s: %w", jsonProblem(data, err), ErrInvalidRun)
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the run at byte %d: %w", dec.InputOffset(), ErrInvalidRun)
	}
	if run.Format != RunFormat {
		if run.Format == "" {
			return nil, fmt.Errorf("no format stamp (want %q): not a run.json: %w", RunFormat, ErrInvalidRun)
		}
		return nil, fmt.Errorf("format %q, this autoprof reads %q: %w", run.Format, RunFormat, ErrInvalidRun)
	}
	if err := Validate(&run); err != nil {
		return nil, err
	}
	return &run, nil
}

// refuseOld refuses a run of an older format before its layout is
// decoded, so that the error says what to do rather than which field no
// longer exists.
func refuseOld(data []byte) error {
	var stamp struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(data, &stamp) != nil || !slices.Contains(oldFormats, stamp.Format) {
		return nil // decodeRun says what else is wrong
	}
	return fmt.Errorf("format %q is an earlier autoprof's, this one reads %q: %w", stamp.Format, RunFormat, ErrOldRun)
}

// jsonProblem describes a decoding error in one line.
func jsonProblem(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Sprintf("truncated after %d bytes", len(data))
	case errors.As(err, &syn):
		return fmt.Sprintf("corrupt JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("not a run: a JSON %s where a run object belongs", typ.Value)
		}
		return fmt.Sprintf("field %s: a JSON %s where %v belongs", typ.Field, typ.Value, typ.Type)
	}
	return err.Error()
}

// Validate checks the invariants that reports rely on: node i has ID i, a
// parent before it (or −1 for a root) and a path that is its parent's path
// followed by its own point; findings and trace events name nodes that
// exist; the confidence level is in (0, 1); round numbers lie in
// [0, Meta.Rounds] and Meta.Rounds in [0, MaxRounds]. Errors wrap
// ErrInvalidRun.
func Validate(run *search.Run) error {
	if run == nil {
		return fmt.Errorf("nil run: %w", ErrInvalidRun)
	}
	if c := run.Meta.Confidence; c <= 0 || c >= 1 {
		return fmt.Errorf("confidence level %v is not in (0, 1): %w", c, ErrInvalidRun)
	}
	m := run.Meta
	if m.Rounds < 0 || m.Rounds > MaxRounds || m.WindowRounds < 0 || m.WindowRounds > m.Rounds+1 ||
		m.WindowStart < 0 || m.WindowStart > m.Rounds+1 {
		return fmt.Errorf("%d rounds with a window of %d from round %d: %w", m.Rounds, m.WindowRounds, m.WindowStart, ErrInvalidRun)
	}
	for i := range run.Nodes {
		if err := validNode(run, i); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
	}
	n := len(run.Nodes)
	for i, f := range run.Findings {
		if f.Node < 0 || f.Node >= n {
			return fmt.Errorf("finding %d: node %d of %d: %w", i+1, f.Node, n, ErrInvalidRun)
		}
	}
	for i, e := range run.Trace {
		if e.Node < 0 || e.Node >= max(n, 1) {
			return fmt.Errorf("trace event %d: node %d of %d: %w", i+1, e.Node, n, ErrInvalidRun)
		}
	}
	return nil
}

func validNode(run *search.Run, i int) error {
	nd := &run.Nodes[i]
	if nd.ID != i {
		return fmt.Errorf("id %d at index %d: %w", nd.ID, i, ErrInvalidRun)
	}
	if nd.Parent < -1 || nd.Parent >= i {
		return fmt.Errorf("parent %d is not an earlier node: %w", nd.Parent, ErrInvalidRun)
	}
	var parent []string
	if nd.Parent >= 0 {
		parent = run.Nodes[nd.Parent].Path
	}
	for _, r := range nd.Rounds {
		if r.Round < 0 || r.Round > run.Meta.Rounds {
			return fmt.Errorf("round %d of a run of %d: %w", r.Round, run.Meta.Rounds, ErrInvalidRun)
		}
	}
	ok := len(nd.Path) == len(parent)+1 && nd.Path[len(parent)] == nd.Point.String()
	for i := 0; ok && i < len(parent); i++ {
		ok = nd.Path[i] == parent[i]
	}
	if !ok {
		return fmt.Errorf("path %q is not its parent's path followed by %s: %w", strings.Join(nd.Path, ";"), nd.Point, ErrInvalidRun)
	}
	return nil
}
