package splice

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"sigs.k8s.io/yaml"
)

// Experiment is GILK's manual mode as a file: instruments, each with its
// own launch and splashdown time, measured for a target. JSON or YAML:
//
//	duration: 30s
//	interval: 1s
//	target: {pids: [1234]}          # or {cgroup: system.slice/foo.service}
//	instruments:
//	  - spec: __x64_sys_read        # FUNC[+OFF][:entry|:exit|:timer|:targets]
//	  - spec: vfs_read:timer
//	    launch: 5s                  # after the start (default 0)
//	    splashdown: 20s             # withdrawn then (default: the end)
type Experiment struct {
	Duration Duration `json:"duration"`
	Interval Duration `json:"interval"`
	// MaxOverheadPct ends the experiment once its instruments cost more
	// than this share of the CPUs over an interval (Run.MaxOverheadPct);
	// 0 for no bound.
	MaxOverheadPct float64           `json:"max_overhead_pct,omitempty"`
	Target         ExperimentTarget  `json:"target"`
	Instruments    []ExperimentEntry `json:"instruments"`
}

// ExperimentTarget is Target in the file.
type ExperimentTarget struct {
	PIDs   []int  `json:"pids"`
	Cgroup string `json:"cgroup"`
}

// ExperimentEntry is one instrument of an experiment.
type ExperimentEntry struct {
	Spec       string   `json:"spec"`
	Launch     Duration `json:"launch"`
	Splashdown Duration `json:"splashdown"`
}

// Duration is a time.Duration written "1.5s" in files (or a number of
// seconds).
type Duration time.Duration

// UnmarshalJSON accepts "1m30s" or seconds as a number.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: want \"1.5s\" or seconds", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the "1.5s" form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Planned is one instrument of a parsed experiment.
type Planned struct {
	Spec       instrument.Spec
	Launch     time.Duration
	Splashdown time.Duration // 0: at the end
}

// ParseExperiment parses an experiment file (JSON, or YAML, which is
// converted to JSON first) and checks it: every spec parses, times are not
// negative, and a splashdown comes after its launch and within the
// duration when one is given. Unknown fields are errors.
func ParseExperiment(data []byte) (*Experiment, []Planned, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("experiment: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	var e Experiment
	if err := dec.Decode(&e); err != nil {
		return nil, nil, fmt.Errorf("experiment: %w", err)
	}
	if e.Duration < 0 || e.Interval < 0 {
		return nil, nil, fmt.Errorf("experiment: negative duration or interval")
	}
	if e.MaxOverheadPct < 0 || e.MaxOverheadPct > 100 || math.IsNaN(e.MaxOverheadPct) {
		return nil, nil, fmt.Errorf("experiment: max_overhead_pct %v: want a percentage of the CPUs, 0 for no bound", e.MaxOverheadPct)
	}
	if len(e.Instruments) == 0 {
		return nil, nil, fmt.Errorf("experiment: no instruments")
	}
	tg := instrument.Target{PIDs: e.Target.PIDs, Cgroup: e.Target.Cgroup}
	plan := make([]Planned, 0, len(e.Instruments))
	for i, in := range e.Instruments {
		p, err := planEntry(i, in, tg, time.Duration(e.Duration))
		if err != nil {
			return nil, nil, err
		}
		plan = append(plan, p)
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].Launch < plan[j].Launch })
	return &e, plan, nil
}

func planEntry(i int, in ExperimentEntry, tg instrument.Target, total time.Duration) (Planned, error) {
	spec, err := instrument.ParseSpec(in.Spec)
	if err != nil {
		return Planned{}, fmt.Errorf("experiment instrument %d: %w", i+1, err)
	}
	spec.Target = tg
	p := Planned{Spec: spec, Launch: time.Duration(in.Launch), Splashdown: time.Duration(in.Splashdown)}
	switch {
	case p.Launch < 0 || p.Splashdown < 0:
		return Planned{}, fmt.Errorf("experiment instrument %d (%s): negative time", i+1, in.Spec)
	case p.Splashdown != 0 && p.Splashdown <= p.Launch:
		return Planned{}, fmt.Errorf("experiment instrument %d (%s): splashdown %v is not after launch %v", i+1, in.Spec, p.Splashdown, p.Launch)
	case total > 0 && p.Launch >= total:
		return Planned{}, fmt.Errorf("experiment instrument %d (%s): launch %v is not within the duration %v", i+1, in.Spec, p.Launch, total)
	}
	return p, nil
}
