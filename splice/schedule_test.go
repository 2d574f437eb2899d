package splice

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// logInstrumenter records inserts and withdrawals, touching no kernel.
type logInstrumenter struct{ log []string }

type logInstrument struct {
	l    *logInstrumenter
	spec instrument.Spec
}

func (l *logInstrumenter) Backend() instrument.Backend        { return "log" }
func (l *logInstrumenter) Check(instrument.Spec) error        { return nil }
func (l *logInstrumenter) Read() (*instrument.Reading, error) { return &instrument.Reading{}, nil }
func (l *logInstrumenter) Close() error                       { return nil }
func (l *logInstrumenter) Insert(_ context.Context, spec instrument.Spec) (instrument.Instrument, error) {
	l.log = append(l.log, "+"+spec.String())
	return &logInstrument{l, spec}, nil
}
func (i *logInstrument) Spec() instrument.Spec { return i.spec }
func (i *logInstrument) Close() error {
	i.l.log = append(i.l.log, "-"+i.spec.String())
	return nil
}

// TestSchedule steps an experiment through its launch and splashdown
// times: each instrument goes in once its launch has come, out once its
// splashdown has, never twice, and CloseAll takes out the rest.
func TestSchedule(t *testing.T) {
	plan := []Planned{
		{Spec: instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer}},
		{Spec: instrument.Spec{Point: instrument.Point{Func: "vfs_write"}, Kind: instrument.Count}, Launch: 2 * time.Second, Splashdown: 4 * time.Second},
		{Spec: instrument.Spec{Point: instrument.Point{Func: "ksys_read"}, Kind: instrument.Timer}, Launch: 3 * time.Second},
	}
	l := &logInstrumenter{}
	sc := NewSchedule(l, plan)
	steps := []struct {
		at       time.Duration
		log      []string
		launched []string
	}{
		{0, []string{"+vfs_read:timer"}, []string{"vfs_read:timer"}},
		{time.Second, nil, []string{"vfs_read:timer"}},
		{2 * time.Second, []string{"+vfs_write:entry"}, []string{"vfs_read:timer", "vfs_write:entry"}},
		{5 * time.Second, []string{"+ksys_read:timer", "-vfs_write:entry"}, []string{"vfs_read:timer", "vfs_write:entry", "ksys_read:timer"}},
		{6 * time.Second, nil, []string{"vfs_read:timer", "vfs_write:entry", "ksys_read:timer"}},
	}
	for _, st := range steps {
		l.log = nil
		if err := sc.Step(context.Background(), st.at); err != nil {
			t.Fatal(err)
		}
		slices.Sort(l.log)
		want := slices.Sorted(slices.Values(st.log))
		if !slices.Equal(l.log, want) {
			t.Errorf("at %v: %q, want %q", st.at, l.log, want)
		}
		if got := sc.Launched(); !slices.Equal(got, st.launched) {
			t.Errorf("at %v: launched %q, want %q", st.at, got, st.launched)
		}
	}
	l.log = nil
	sc.CloseAll()
	if want := []string{"-ksys_read:timer", "-vfs_read:timer"}; !slices.Equal(slices.Sorted(slices.Values(l.log)), want) {
		t.Errorf("CloseAll: %q, want %q", l.log, want)
	}
	if rows := WithIdle([]Summary{{Instrument: "vfs_read:timer", Calls: 3}}, sc.Launched()); len(rows) != 3 || rows[0].Instrument != "ksys_read:timer" || rows[0].Calls != 0 {
		t.Errorf("WithIdle: %+v, want a zero row for each launched instrument that never fired, sorted", rows)
	}
}
