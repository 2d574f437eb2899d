package search_test

import (
	"reflect"
	"testing"
	"testing/synctest"

	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/search/searchtest"
)

// TestProgressTree checks the tree and the decisions that Progress gives
// after each round: the snapshots grow (a node, once in the tree, stays
// with its ID and parent), the last holds more nodes than the first, each
// node's parent comes before it, and the events of all the calls, in
// order, are the run's trace up to the last round's decisions.
func TestProgressTree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k, _ := searchtest.Planted(searchtest.Shapes[0], 1)
		k.Start()
		var snaps [][]search.Node
		var events []search.Event
		run := hunt(t, k, func(c *search.Config) {
			c.ProgressTree = true
			c.Progress = func(p search.Progress) {
				snaps = append(snaps, p.Nodes)
				events = append(events, p.Events...)
			}
		})
		if len(snaps) < 2 {
			t.Fatalf("%d progress calls", len(snaps))
		}
		for r, nodes := range snaps {
			for i, n := range nodes {
				if n.ID != i || n.Parent >= i || n.Rounds != nil {
					t.Fatalf("round %d: node %d has ID %d, parent %d, %d rounds", r+1, i, n.ID, n.Parent, len(n.Rounds))
				}
				if r > 0 && i < len(snaps[r-1]) && (snaps[r-1][i].Parent != n.Parent || snaps[r-1][i].Point != n.Point) {
					t.Errorf("round %d: node %d changed place", r+1, i)
				}
			}
			if r > 0 && len(nodes) < len(snaps[r-1]) {
				t.Errorf("round %d: %d nodes, %d before", r+1, len(nodes), len(snaps[r-1]))
			}
		}
		if first, last := len(snaps[0]), len(snaps[len(snaps)-1]); last <= first {
			t.Errorf("the tree did not grow: %d nodes after the first round, %d after the last", first, last)
		}
		if len(events) == 0 || len(events) > len(run.Trace) || !reflect.DeepEqual(events, run.Trace[:len(events)]) {
			t.Errorf("progress events (%d) are not the start of the trace (%d)", len(events), len(run.Trace))
		}
	})
	// Without ProgressTree, no snapshot is made.
	synctest.Test(t, func(t *testing.T) {
		k, _ := searchtest.Planted(searchtest.Shapes[0], 1)
		k.Start()
		calls := 0
		hunt(t, k, func(c *search.Config) {
			c.Progress = func(p search.Progress) {
				calls++
				if p.Nodes != nil || p.Events != nil {
					t.Errorf("round %d: a snapshot of %d nodes and %d events without ProgressTree", p.Round, len(p.Nodes), len(p.Events))
				}
			}
		})
		if calls == 0 {
			t.Error("no progress call")
		}
	})
}
