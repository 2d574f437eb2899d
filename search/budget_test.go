package search

import (
	"fmt"
	"slices"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
)

// TestEvictions checks the eviction order on hand-made instruments: the
// costliest per unit of value first, the best path last, a probation
// burst spared only where cheaper instruments pay the excess, and no more
// than the excess.
func TestEvictions(t *testing.T) {
	cold := costItem{key: "cold", pct: 0.2, value: 0.01}
	warm := costItem{key: "warm", pct: 0.2, value: 0.04}
	chain := costItem{key: "chain", pct: 0.01, value: 0.5}
	best := costItem{key: "best", pct: 0.01, value: 0.45, protected: true}
	helper := costItem{key: "helper", pct: 2.4, value: 0.45}
	for _, c := range []struct {
		name    string
		items   []costItem
		over    float64
		surplus bool
		want    []string
		enough  bool
	}{
		{"within", []costItem{cold, chain}, 1.9, false, nil, true},
		{"costliest per value first", []costItem{chain, cold, warm, helper, best}, 3.0, false, []string{"helper"}, true},
		{"cold before warm", []costItem{chain, warm, cold, best}, 2.3, false, []string{"cold", "warm"}, true},
		{"best path last", []costItem{best, chain}, 2.015, false, []string{"chain", "best"}, true},
		{"not enough: the cheap stay", []costItem{chain}, 5, false, nil, false},
		{"not enough: the costly go", []costItem{chain, helper}, 5, false, []string{"helper"}, false},
		// A burst that costs no more than the budget is spared while
		// cheaper instruments pay the excess...
		{"burst spared", []costItem{cold, warm, {key: "burst", pct: 1.0, value: 0.3, probation: true}}, 2.3, true, []string{"cold", "warm"}, true},
		// ...but not when they cannot, nor when the average is spent,
		{"burst evicted: cheaper cannot pay", []costItem{cold, {key: "burst", pct: 1.0, value: 0.3, probation: true}}, 2.5, true, []string{"burst"}, true},
		{"burst by cost per value: no surplus", []costItem{cold, warm, {key: "burst", pct: 1.0, value: 0.3, probation: true}}, 2.3, false, []string{"cold", "warm"}, true},
		{"burst evicted: no surplus", []costItem{warm, {key: "burst", pct: 1.0, value: 0.1, probation: true}}, 2.3, false, []string{"burst"}, true},
		// ...nor when it alone costs more than the budget.
		{"burst evicted: over the budget alone", []costItem{cold, warm, {key: "burst", pct: 3, value: 0.3, probation: true}}, 4.5, true, []string{"burst"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, enough := evictions(c.items, c.over, 2, c.surplus)
			if !slices.Equal(got, c.want) || enough != c.enough {
				t.Errorf("evictions = %v, %v; want %v, %v", got, enough, c.want, c.enough)
			}
		})
	}
}

// TestAllowance: the average overhead is what the budget bounds.
func TestAllowance(t *testing.T) {
	var a allowance
	a.add(1, 2, 10) // 10 %·s spent of 20 allowed
	if !a.surplus() {
		t.Fatal("no surplus after spending half the allowance")
	}
	a.add(5, 2, 4) // 30 spent of 28
	if a.surplus() {
		t.Fatal("a surplus after spending more than the allowance")
	}
}

// TestPctOf checks the cost model's formula: 1,000 hits a second of a
// 2 µs instrument on 2 CPUs is 0.1% of them.
func TestPctOf(t *testing.T) {
	if got := pctOf(1000, 2000, 2); got != 0.1 {
		t.Errorf("pctOf = %g, want 0.1", got)
	}
	if !fits(1.9, 0.1, 2) || fits(1.9, 0.11, 2) {
		t.Error("fits does not hold the budget as the bound")
	}
}

// TestDecisionRules checks the withdrawal and refinement rules on
// hand-made nodes: an interval wholly below θ withdraws (a root's never),
// wholly above refines (callees first, blocks once refined with nothing
// deferred), straddling does nothing, and candidates come most valuable
// first.
func TestDecisionRules(t *testing.T) {
	iv := func(lo, hi float64) Interval { return Interval{Mean: (lo + hi) / 2, Low: lo, High: hi, N: 5} }
	cold := &node{id: 1, incl: iv(0.01, 0.03)}
	straddle := &node{id: 2, incl: iv(0.03, 0.08)}
	hot := &node{id: 3, incl: iv(0.2, 0.3)}
	hotter := &node{id: 4, incl: iv(0.5, 0.6)}
	leaf := &node{id: 5, incl: iv(0.4, 0.5), excl: iv(0.35, 0.45), refined: true}
	deferred := &node{id: 6, incl: iv(0.3, 0.4), refined: true, deferred: []instrument.Point{{Func: "f"}}}
	young := &node{id: 7, incl: iv(0.5, 0.6)}
	coldRoot := &node{id: 8, kind: NodeRoot, incl: iv(0.001, 0.002)}
	nodes := []*node{cold, straddle, hot, hotter, leaf, deferred, young, coldRoot}
	decidable := func(n *node) bool { return n != young }
	if got := coldNodes(nodes, 0.05, decidable); len(got) != 1 || got[0] != cold {
		t.Errorf("cold nodes %v, want node 1", ids(got))
	}
	var got []string
	for _, c := range refineCandidates(nodes, 0.05, 3, false, decidable) {
		got = append(got, fmt.Sprintf("%d%s", c.n.id, map[bool]string{true: "b"}[c.blocks]))
	}
	if want := []string{"4", "5b", "6", "3"}; !slices.Equal(got, want) {
		t.Errorf("candidates %v, want %v", got, want)
	}
	if c := refineCandidates(nodes, 0.05, 3, true, decidable); len(c) != 3 {
		t.Errorf("%d candidates without blocks, want 3", len(c))
	}
}

func ids(ns []*node) []int {
	var out []int
	for _, n := range ns {
		out = append(out, n.id)
	}
	return out
}
