//go:build linux

package live

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/autoprof/autoprof/internal/boot"
	"github.com/autoprof/autoprof/internal/kernel"
)

// calibrationMaxAge is how long a calibration serves the hunts after it
// on the same boot. The costs it measured are scaled every round by the
// programs' run time the kernel measures then (search's costScale), so a
// machine busier or quieter than during the calibration is followed.
const calibrationMaxAge = time.Hour

// calibrationCache keeps the last calibration on disk: a hunt calibrates
// every backend at start-up (seconds under emulation, and two hunts of one
// workload calibrated one machine 94 ns a hit apart, which a diff of the
// two then has to allow for). The hunts of the next hour on the same boot,
// kernel, backend and autoprof binary take its costs.
type calibrationCache struct {
	path string // "" where there is no cache directory
}

// calibrationEntry is what the cache file holds.
type calibrationEntry struct {
	Key   string             `json:"key"`
	At    time.Time          `json:"at"`
	Costs map[string]float64 `json:"costs"`
}

func openCalibrationCache() calibrationCache {
	dir, err := os.UserCacheDir()
	if err != nil {
		return calibrationCache{}
	}
	return calibrationCache{path: filepath.Join(dir, "autoprof", "calibration.json")}
}

// calibrationKey names what a calibration depends on: this boot, the
// kernel, the backend the session serves function instruments with, and
// this binary (its instruments' programs).
func calibrationKey(backend string) (string, error) {
	bootID, err := boot.ID()
	if err != nil {
		return "", err
	}
	rel, err := kernel.Release()
	if err != nil {
		return "", err
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	st, err := os.Stat(exe)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s %s %s %d %d", bootID, rel, backend, exe, st.Size(), st.ModTime().UnixNano()), nil
}

// load returns the costs calibrated under key within calibrationMaxAge
// of now, and when.
func (c calibrationCache) load(key string, now time.Time) (map[string]float64, time.Time, bool) {
	if c.path == "" || key == "" {
		return nil, time.Time{}, false
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return nil, time.Time{}, false
	}
	var e calibrationEntry
	if json.Unmarshal(b, &e) != nil || e.Key != key || len(e.Costs) == 0 || now.Sub(e.At) > calibrationMaxAge || e.At.After(now) {
		return nil, time.Time{}, false
	}
	return e.Costs, e.At, true
}

// store keeps costs as the calibration under key, whole or not at all.
func (c calibrationCache) store(key string, at time.Time, costs map[string]float64) error {
	if c.path == "" || key == "" {
		return nil
	}
	b, err := json.Marshal(calibrationEntry{Key: key, At: at, Costs: costs})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(c.path), "calibration-*.tmp")
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), c.path)
	}
	if werr != nil {
		os.Remove(f.Name())
	}
	return werr
}
