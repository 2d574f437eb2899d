package ui

import (
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/autoprof/autoprof/splice"
)

// observedTargets are the indirect-call targets the experiments of this
// server captured (instruments of kind targets), by call site: what the
// function view shows beside each indirect site.
type observedTargets struct {
	mu    sync.Mutex
	sites map[string]map[int64]map[string]uint64 // function → site offset → target → calls
}

// observedTarget is one target of an indirect site, as /api/function
// gives it.
type observedTarget struct {
	Func  string `json:"func"` // the function called, or its address where no symbol holds it
	Calls uint64 `json:"calls"`
}

// add records the targets an experiment's summary captured.
func (o *observedTargets) add(sums []splice.Summary) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range sums {
		for _, t := range s.Targets {
			if len(t.Path) == 0 {
				continue
			}
			site := t.Path[len(t.Path)-1]
			name := t.Func
			if name == "" {
				name = fmt.Sprintf("%#x", t.Target)
			}
			if o.sites == nil {
				o.sites = map[string]map[int64]map[string]uint64{}
			}
			fn := o.sites[site.Func]
			if fn == nil {
				fn = map[int64]map[string]uint64{}
				o.sites[site.Func] = fn
			}
			at := fn[int64(site.Offset)]
			if at == nil {
				at = map[string]uint64{}
				fn[int64(site.Offset)] = at
			}
			at[name] += t.Calls
		}
	}
}

// of returns the targets seen at fn's indirect sites, by offset (decimal,
// as the listing's offsets are numbers), most called first; nil where
// none were.
func (o *observedTargets) of(fn string) map[string][]observedTarget {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out map[string][]observedTarget
	for off, ts := range o.sites[fn] {
		list := make([]observedTarget, 0, len(ts))
		for f, n := range ts {
			list = append(list, observedTarget{Func: f, Calls: n})
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].Calls != list[j].Calls {
				return list[i].Calls > list[j].Calls
			}
			return list[i].Func < list[j].Func
		})
		if out == nil {
			out = map[string][]observedTarget{}
		}
		out[strconv.FormatInt(off, 10)] = list
	}
	return out
}
