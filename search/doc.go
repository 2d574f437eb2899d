// Package search is the controller of a bottleneck hunt: roots, rounds,
// statistics, refine and withdraw decisions under an overhead budget, stop
// rules and findings. It is pure Go and is tested with a fake Instrumenter.
package search
