package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/reports/internal/synth"
	"github.com/autoprof/autoprof/search"
)

func TestLoadRoundTrip(t *testing.T) {
	run := synth.Generate(synth.Read(4096, "6.1", 7))
	dir := t.TempDir()
	if err := Write(dir, run); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Format != RunFormat {
		t.Errorf("format %q", back.Format)
	}
	back.Format = ""
	a, _ := json.Marshal(run)
	b, _ := json.Marshal(back)
	if !bytes.Equal(a, b) {
		t.Error("run.json does not round-trip")
	}
	// The profile path and run.json itself name the same run.
	for _, p := range []string{filepath.Join(dir, RunFile), filepath.Join(dir, ProfileFile)} {
		if _, err := Load(p); err != nil {
			t.Errorf("Load(%s): %v", p, err)
		}
	}
}

// TestLoadBad gives Load corrupt, truncated and mismatched inputs: each
// must fail with one line that names the file.
func TestLoadBad(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "read4k-6.1", RunFile))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(r *search.Run)) []byte {
		var r search.Run
		if err := json.Unmarshal(good, &r); err != nil {
			t.Fatal(err)
		}
		f(&r)
		b, _ := json.Marshal(&r)
		return b
	}
	findings, _ := os.ReadFile(filepath.Join("testdata", "read4k-6.1", FindingsFile))
	profileData, _ := os.ReadFile(filepath.Join("testdata", "read4k-6.1", ProfileFile))
	cases := []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"truncated", RunFile, good[:len(good)/2], "truncated"},
		{"empty", RunFile, nil, "empty file"},
		{"garbage", RunFile, []byte("\x00\x01binary"), "corrupt JSON at byte 1"},
		{"flipped", RunFile, bytes.Replace(good, []byte(`"nodes": [`), []byte(`"nodes": {`), 1), "corrupt JSON"},
		{"findings.json", RunFile, findings, "no format stamp"},
		{"array", RunFile, []byte(`[1, 2]`), "not a run"},
		{"trailing", RunFile, append(append([]byte{}, good...), []byte(`{"x":1}`)...), "data after the run"},
		{"no format", RunFile, edit(func(r *search.Run) { r.Format = "" }), "no format stamp"},
		{"other format", RunFile, edit(func(r *search.Run) { r.Format = "autoprof-run/9" }), `format "autoprof-run/9"`},
		{"old format", RunFile, edit(func(r *search.Run) { r.Format = "autoprof-run/1" }), `format "autoprof-run/1" is an earlier autoprof's, this one reads "autoprof-run/2": re-run the hunt with this autoprof`},
		{"bad parent", RunFile, edit(func(r *search.Run) { r.Nodes[3].Parent = 7 }), "node 3: parent 7"},
		{"bad id", RunFile, edit(func(r *search.Run) { r.Nodes[2].ID = 9 }), "node 2: id 9"},
		{"bad path", RunFile, edit(func(r *search.Run) { r.Nodes[5].Path[0] = "x" }), "node 5: path"},
		{"bad finding", RunFile, edit(func(r *search.Run) { r.Findings[0].Node = 99 }), "finding 1: node 99"},
		{"bad confidence", RunFile, edit(func(r *search.Run) { r.Meta.Confidence = 95 }), "confidence level 95"},
		{"type", RunFile, bytes.Replace(good, []byte(`"rounds": 40`), []byte(`"rounds": "forty"`), 1), "field meta.rounds"},
		{"profile alone", ProfileFile, profileData, "a profile without the run.json beside it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, c.file)
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) || !strings.Contains(msg, path) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %s and saying %q", msg, path, c.want)
			}
			if !errors.Is(err, ErrInvalidRun) {
				t.Errorf("error %q does not match ErrInvalidRun", msg)
			}
			if old := c.name == "old format"; errors.Is(err, ErrOldRun) != old {
				t.Errorf("error %q: errors.Is(err, ErrOldRun) = %v, want %v", msg, !old, old)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not an autoprof output directory") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
}
