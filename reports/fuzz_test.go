package reports

import (
	"bytes"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/reports/internal/synth"
)

// FuzzDecodeRun feeds run.json's reader arbitrary bytes: it must never
// panic, every error must be one line wrapping ErrInvalidRun, and every run
// it accepts must render.
func FuzzDecodeRun(f *testing.F) {
	// A small run keeps the fuzzer fast (it minimises what it finds).
	spec := synth.Read(4096, "6.1", 1)
	spec.Rounds, spec.Nodes = 3, spec.Nodes[:4]
	spec.Nodes[3].WithdrawAt = 2
	run := synth.Generate(spec)
	run.Format = RunFormat
	var b bytes.Buffer
	if err := WriteJSON(&b, run); err != nil {
		f.Fatal(err)
	}
	good := b.Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"format":"autoprof-run/2","meta":{"confidence":0.95},"nodes":[{"id":0,"parent":-1,"point":{"Func":"f"},"path":["f"]}]}`))
	f.Add([]byte(`{"format":"autoprof-run/2","meta":{"confidence":0.95},"nodes":[{"id":0,"parent":0}]}`))
	f.Add([]byte(`{"format":"autoprof-run/1","meta":{"confidence":0.95},"nodes":[{"id":0,"parent":-1,"point":{"Func":"f"},"path":["f"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		run, err := decodeRun(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if _, err := Render(run); err != nil {
			t.Fatalf("accepted run does not render: %v", err)
		}
		if _, err := Diff(run, run, DiffOptions{}); err != nil && len(run.Nodes) > 0 {
			t.Fatalf("run does not compare with itself: %v", err)
		}
	})
}

func BenchmarkRender(b *testing.B) {
	run := fixture(b, "read4k-6.1")
	for b.Loop() {
		if _, err := Render(run); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDiff(b *testing.B) {
	base, new := fixture(b, "read4k-6.1"), fixture(b, "read4k-6.12")
	for b.Loop() {
		if _, err := Diff(base, new, DiffOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
