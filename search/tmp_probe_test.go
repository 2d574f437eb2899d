package search_test

import (
	"fmt"
	"strings"
	"testing"
)

func TestTmpSums(t *testing.T) {
	for _, cost := range []float64{1900, 10000, 30000} {
		for _, seed := range []uint64{2, 4, 5} {
			t.Run(fmt.Sprintf("c%.0f/gt%d", cost, seed), func(t *testing.T) {
				s, run := huntTree(t, seed, cost)
				t.Logf("sum %.1f first %v top %s err %.1f", 100*s.ExclSum, s.FirstRight, s.Top, 100*s.MaxShareErr)
				if s.ExclSum > 1.05 {
					for _, n := range run.Nodes {
						if n.Incl.Mean < 0.005 && n.Excl.Mean < 0.005 {
							continue
						}
						t.Logf("node %d <- %d %-8s %-8s %-10s incl %5.1f%% excl %5.1f%% calls %d samples %d r%d-%d %s", n.ID, n.Parent, n.Kind, n.Source, n.State, 100*n.Incl.Mean, 100*n.Excl.Mean, n.Calls, n.Samples, n.From, n.To, strings.Join(n.Path, ";"))
					}
				}
			})
		}
	}
}
