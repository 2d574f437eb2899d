package live

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCalibrationCache: a calibration stored under a key serves that key
// for an hour; another key, an older one, a damaged file or none serve
// nothing, and no temporary file is left.
func TestCalibrationCache(t *testing.T) {
	c := calibrationCache{path: filepath.Join(t.TempDir(), "autoprof", "calibration.json")}
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	costs := map[string]float64{"fentry": 1755, "fentry:inside": 944}
	if _, _, ok := c.load("k", now); ok {
		t.Fatal("an empty cache served a calibration")
	}
	if err := c.store("k", now, costs); err != nil {
		t.Fatal(err)
	}
	got, at, ok := c.load("k", now.Add(59*time.Minute))
	if !ok || !at.Equal(now) || got["fentry"] != 1755 || got["fentry:inside"] != 944 {
		t.Errorf("59 minutes on: %v at %v, %v; want the costs stored", got, at, ok)
	}
	for _, c2 := range []struct {
		key  string
		when time.Time
		why  string
	}{{"other", now, "another key"}, {"k", now.Add(61 * time.Minute), "over an hour old"}, {"k", now.Add(-time.Minute), "from the future"}} {
		if _, _, ok := c.load(c2.key, c2.when); ok {
			t.Errorf("%s: served", c2.why)
		}
	}
	if err := os.WriteFile(c.path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := c.load("k", now); ok {
		t.Error("a damaged file served a calibration")
	}
	entries, _ := os.ReadDir(filepath.Dir(c.path))
	if len(entries) != 1 {
		t.Errorf("%d files in the cache directory, want the calibration alone", len(entries))
	}
}

// TestCalibrationKey: the key holds this boot and this binary; the
// backend tells two keys apart.
func TestCalibrationKey(t *testing.T) {
	a, err := calibrationKey("fentry")
	if err != nil {
		t.Fatalf("no key on this machine: %v", err)
	}
	b, _ := calibrationKey("kprobe")
	if a == b || a == "" {
		t.Errorf("keys %q and %q", a, b)
	}
}
