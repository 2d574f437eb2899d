//go:build !vm

package callgraph

import (
	"testing"
	"time"
)

// TestObjdumpAgreesOffline decodes every function of Debian's 6.1 kernel
// (and 6.12, except under the race detector) and compares the instruction
// boundaries with objdump's over the same bytes.
func TestObjdumpAgreesOffline(t *testing.T) {
	series := []string{"6.1", "6.12"}
	if raceEnabled {
		series = series[:1]
	}
	for _, series := range series {
		t.Run(series, func(t *testing.T) {
			_, im, syms := debian(t, series)
			start, end, _ := syms.CoreText()
			code := make([]byte, end-start)
			if err := im.ReadAt(code, start); err != nil {
				t.Fatal(err)
			}
			var funcs []Symbol
			for _, i := range syms.text {
				funcs = append(funcs, syms.all[i])
			}
			t0 := time.Now()
			addrs, texts := runObjdump(t, []region{{addr: start, code: code, funcs: funcs}}, keepObjdumpText)
			t.Logf("objdump: %d instructions in %v", len(addrs), time.Since(t0))
			t0 = time.Now()
			var r diffReport
			for _, fn := range syms.Functions() {
				body := code[fn.Addr-start : fn.End()-start]
				after := code[fn.End()-start : min(fn.End()-start+15, uint64(len(code)))]
				f, err := Decode(fn, body, syms)
				if err != nil {
					t.Fatal(err)
				}
				r.functions++
				if d := compareWithObjdump(f, objdumpOffsets(addrs, fn.Addr, fn.End()), texts, after); d != nil {
					r.add(d)
				}
			}
			t.Logf("decoding and comparing: %v", time.Since(t0))
			r.check(t, 0.999)
		})
	}
}
