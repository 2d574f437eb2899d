package measure

import (
	"fmt"
	"testing"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
)

// BenchmarkLoad loads each instrument program as an instrument's insertion
// does (an fentry or fexit program for each function, verified anew; a
// kprobe or kretprobe program once per session, shared), and reports the
// instructions the verifier went through (verified-insns): what it costs,
// in autoprof's own CPU, to put an instrument in. In the test VMs:
//
//	bin/vmtest test -kernels 6.1,6.12 -run '^$' -bench Load ./kmod/measure
func BenchmarkLoad(b *testing.B) {
	m, err := Load(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, k := range []progKey{{kind: Fentry, fn: "vfs_read", id: 7}, {kind: Fexit, fn: "vfs_read", id: 7}, {kind: Kprobe}, {kind: Kretprobe}} {
		b.Run(fmt.Sprint(progNames[k.kind]), func(b *testing.B) {
			if k.kind == Fentry || k.kind == Fexit {
				featuretest.Require(b, features.HaveFentry())
			}
			var verified uint32
			for b.Loop() {
				p, err := m.load(k)
				if err != nil {
					b.Fatal(err)
				}
				if verified == 0 {
					info, err := p.Info()
					if err != nil {
						b.Fatal(err)
					}
					verified, _ = info.VerifiedInstructions()
				}
				p.Close()
			}
			b.ReportMetric(float64(verified), "verified-insns")
		})
	}
}
