package splice

import (
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

func TestSummarize(t *testing.T) {
	vr := instrument.Point{Func: "vfs_read"}
	r := &instrument.Reading{Contexts: []instrument.ContextReading{
		{Path: instrument.Path{{Func: "__x64_sys_read"}, vr}, Kind: instrument.Timer, Calls: 10, InclNs: 1000, InclOffCPUNs: 250},
		{Path: instrument.Path{{Func: "__x64_sys_pread64"}, vr}, Kind: instrument.Timer, Calls: 30, InclNs: 3000, InclOffCPUNs: 750},
		{Path: instrument.Path{vr}, Kind: instrument.Count, Calls: 5},
	}}
	s := Summarize(r, 2*time.Second)
	if len(s) != 2 || s[1].Instrument != "vfs_read:timer" {
		t.Fatalf("%+v", s)
	}
	v := s[1]
	if v.Calls != 40 || v.CallsPerSec != 20 || v.MeanNs != 100 || v.OffCPUShare != 0.25 || len(v.Contexts) != 2 {
		t.Errorf("%+v", v)
	}
}
