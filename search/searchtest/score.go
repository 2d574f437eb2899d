package searchtest

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/autoprof/autoprof/internal/calltree"
	"github.com/autoprof/autoprof/search"
)

// TreeScore is how one hunt did on a generated tree, against the truth
// (the plants' shares of the target's time, by Plant.Stat).
type TreeScore struct {
	Tree    string
	Backend string
	// FirstRight: the first finding names the plant of largest share, or
	// one within TieShare of it (a tie within what the truth's own
	// measurement and the emulator's drift can tell apart).
	FirstRight bool
	// FirstIsPlant: the first finding names a plant, any of them (not a
	// caller of the cost, not the instruments' own cost).
	FirstIsPlant bool
	// AllInTopFive: every plant of 10% or more is among the first five
	// findings; Missing names those that are not.
	AllInTopFive bool
	Missing      []string
	// ShareErr is the mean, and MaxShareErr the largest, distance in
	// share between a plant and the first of the first five findings
	// that names it (over the plants found).
	ShareErr, MaxShareErr float64
	// ExclSum is the sum of the exclusive shares of the run's nodes
	// (blocks aside): at most about 1 where the tree is consistent.
	ExclSum float64
	// Instruments the hunt inserted; Rounds it ran; FirstRightRound the
	// round after which the best candidate first named the top plant (0
	// if never or unknown).
	Instruments, Rounds, FirstRightRound int
	// Top is the first finding, for the table.
	Top string
	// Reinserted names a spec inserted more than twice without a new
	// reason in the trace (insert-again), "" if none.
	Reinserted string
}

// Score scores run against tree t and its truth.
func Score(run *search.Run, t *calltree.Tree, truth map[string]float64) TreeScore {
	s := TreeScore{Tree: t.Name, Backend: run.Meta.Backend, AllInTopFive: true, Instruments: run.Overhead.Inserted, Rounds: run.Meta.Rounds}
	top := topPlant(t, truth)
	if len(run.Findings) > 0 {
		f := run.Findings[0]
		s.Top = fmt.Sprintf("%s %.1f%%", f.Path[len(f.Path)-1], 100*f.ExclShare.Mean)
		for _, p := range t.Plants {
			if !t.Matches(p, f.Path) {
				continue
			}
			s.FirstIsPlant = true
			if truth[p.Stat] >= truth[top.Stat]-TieShare {
				s.FirstRight = true
			}
		}
	}
	found := 0
	for _, p := range t.Plants {
		share := truth[p.Stat]
		var match *search.Finding
		for i := range run.Findings[:min(5, len(run.Findings))] {
			if t.Matches(p, run.Findings[i].Path) {
				match = &run.Findings[i]
				break
			}
		}
		if match == nil {
			if share >= 0.10 {
				s.AllInTopFive = false
				s.Missing = append(s.Missing, fmt.Sprintf("%s %s %.1f%%", p.Kind, p.Owner, 100*share))
			}
			continue
		}
		d := math.Abs(match.ExclShare.Mean - match.InstrumentShare - share)
		s.ShareErr += d
		s.MaxShareErr = max(s.MaxShareErr, d)
		found++
	}
	if found > 0 {
		s.ShareErr /= float64(found)
	}
	for _, n := range run.Nodes {
		if n.Kind != search.NodeBlock {
			s.ExclSum += n.Excl.Mean
		}
	}
	s.Reinserted = Reinserted(run)
	return s
}

// Reinserted names a spec the run inserted more than twice without a new
// reason in its trace (an insert-again event), "" if none: the hunt's
// hysteresis.
func Reinserted(run *search.Run) string {
	inserts, again := map[string]int{}, map[string]int{}
	for _, e := range run.Trace {
		switch e.Action {
		case "insert":
			inserts[e.Spec]++
		case "insert-again":
			again[e.Spec]++
		}
	}
	worst := ""
	for spec, n := range inserts {
		if n > 2+again[spec] && (worst == "" || spec < worst) {
			worst = fmt.Sprintf("%s (%d times)", spec, n)
		}
	}
	return worst
}

// TieShare is how close two plants' true shares may be for either to be
// the largest: under QEMU the speed of emulated code drifts by a quarter
// from one run to the next while a sleep's wall time does not, so that
// the truth, measured before the hunt, moves by a few points against the
// shares of the same plants during it.
const TieShare = 0.03

// topPlant is the plant of largest true share.
func topPlant(t *calltree.Tree, truth map[string]float64) calltree.Plant {
	best := t.Plants[0]
	for _, p := range t.Plants[1:] {
		if truth[p.Stat] > truth[best.Stat] {
			best = p
		}
	}
	return best
}

// TruthTable prints the scores of a set of hunts, one line each, and a
// summary line: trees hunted, first finding right (and how many first
// findings name any plant), every plant of 10% or more in the first five,
// mean share error, largest exclusive sum,
// instruments and rounds to the first right finding.
func TruthTable(w io.Writer, title string, scores []TreeScore) {
	fmt.Fprintf(w, "%s\n%-6s %-8s %-5s %-5s %6s %6s %6s %5s %6s  %s\n", title, "tree", "backend", "first", "top5", "err", "maxerr", "sum", "inst", "right@", "first finding / missing")
	var right, plant, all, inst, rr, nrr int
	var errSum, sumMax float64
	for _, s := range scores {
		note := s.Top
		if len(s.Missing) > 0 {
			note += "; missing " + strings.Join(s.Missing, ", ")
		}
		fmt.Fprintf(w, "%-6s %-8s %-5v %-5v %6.1f %6.1f %6.1f %5d %6d  %s\n", s.Tree, s.Backend, s.FirstRight, s.AllInTopFive,
			100*s.ShareErr, 100*s.MaxShareErr, 100*s.ExclSum, s.Instruments, s.FirstRightRound, note)
		if s.FirstRight {
			right++
		}
		if s.FirstIsPlant {
			plant++
		}
		if s.AllInTopFive {
			all++
		}
		errSum += s.ShareErr
		sumMax = max(sumMax, s.ExclSum)
		inst += s.Instruments
		if s.FirstRightRound > 0 {
			rr += s.FirstRightRound
			nrr++
		}
	}
	n := max(len(scores), 1)
	fmt.Fprintf(w, "trees %d, first right %d (a plant %d), all plants >= 10%% in top five %d, mean share error %.1f points, largest exclusive sum %.1f%%, instruments %.1f per hunt, rounds to first right %.1f\n",
		len(scores), right, plant, all, 100*errSum/float64(n), 100*sumMax, float64(inst)/float64(n), float64(rr)/float64(max(nrr, 1)))
	repeatedRuns(w, scores)
}

// repeatedRuns adds, where some tree was hunted more than once (make
// truth TRUTH_RUNS=N), how often each tree's first finding was right: one
// run cannot tell a tree the hunt gets wrong from a close call that went
// either way.
func repeatedRuns(w io.Writer, scores []TreeScore) {
	runs, right := map[string]int{}, map[string]int{}
	var order []string
	most := 0
	for _, s := range scores {
		if runs[s.Tree] == 0 {
			order = append(order, s.Tree)
		}
		runs[s.Tree]++
		most = max(most, runs[s.Tree])
		if s.FirstRight {
			right[s.Tree]++
		}
	}
	if most < 2 {
		return
	}
	var always, majority int
	var misses []string
	for _, t := range order {
		if right[t] == runs[t] {
			always++
		} else {
			misses = append(misses, fmt.Sprintf("%s %d/%d", t, right[t], runs[t]))
		}
		if 2*right[t] > runs[t] {
			majority++
		}
	}
	fmt.Fprintf(w, "runs per tree up to %d: first right in every run %d of %d trees, in most runs %d; missed at least once: %s\n",
		most, always, len(order), majority, strings.Join(misses, ", "))
}
