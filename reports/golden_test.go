package reports

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/autoprof/autoprof/reports/internal/synth"
	"github.com/autoprof/autoprof/search"
)

var update = flag.Bool("update", false, "regenerate the fixtures and golden files under testdata")

// fixtures are the saved runs under testdata, each made by the simulator
// (see testdata/README.md). With -update each is regenerated and every
// output Write makes for it is rewritten: those outputs are the goldens.
var fixtures = map[string]func() synth.Spec{
	"read4k-6.1":   func() synth.Spec { return synth.Read(4096, "6.1", 1) },
	"read4k-6.1b":  func() synth.Spec { return synth.Read(4096, "6.1", 4) },
	"read64k-6.1":  func() synth.Spec { return synth.Read(65536, "6.1", 2) },
	"read4k-6.12":  func() synth.Spec { return synth.Read(4096, "6.12", 3) },
	"fsync-6.1":    func() synth.Spec { return synth.Fsync(5) },
	"sampled-host": func() synth.Spec { return synth.Sampled(6) },
}

// fixture returns the saved run testdata/name, regenerating it first with
// -update.
func fixture(t testing.TB, name string) *search.Run {
	t.Helper()
	dir := filepath.Join("testdata", name)
	if *update {
		run := synth.Generate(fixtures[name]())
		if name == "sampled-host" {
			synth.OnlySampled(run)
		}
		if err := Write(dir, run); err != nil {
			t.Fatal(err)
		}
	}
	run, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// TestGolden renders every fixture and compares each output with the
// file Write left in testdata; profiles are compared as parsed profiles.
func TestGolden(t *testing.T) {
	for name := range fixtures {
		t.Run(name, func(t *testing.T) {
			run := fixture(t, name)
			files, err := Render(run)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				want, err := os.ReadFile(filepath.Join("testdata", name, f.Name))
				if err != nil {
					t.Fatal(err)
				}
				if f.Name == ProfileFile {
					compareProfiles(t, want, f.Data)
					continue
				}
				if !bytes.Equal(want, f.Data) {
					t.Errorf("%s differs from testdata/%s/%s (run go test -update if the change is intended)\n%s",
						f.Name, name, f.Name, firstDiff(string(want), string(f.Data)))
				}
			}
		})
	}
}

func compareProfiles(t *testing.T, want, got []byte) {
	t.Helper()
	pw, err := profile.ParseData(want)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := profile.ParseData(got)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.CheckValid(); err != nil {
		t.Fatal(err)
	}
	if pw.String() != pg.String() {
		t.Errorf("profile differs from the golden one:\n%s", firstDiff(pw.String(), pg.String()))
	}
}

// firstDiff shows the first differing line of two texts.
func firstDiff(a, b string) string {
	la, lb := bytes.Split([]byte(a), []byte("\n")), bytes.Split([]byte(b), []byte("\n"))
	for i := 0; i < max(len(la), len(lb)); i++ {
		var x, y []byte
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if !bytes.Equal(x, y) {
			return "line " + strconv.Itoa(i+1) + ":\nwant: " + string(x) + "\ngot:  " + string(y)
		}
	}
	return "(same lines)"
}
