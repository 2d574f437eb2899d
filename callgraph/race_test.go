//go:build race

package callgraph

// raceEnabled is set when the tests run under the race detector, which
// slows the single-threaded whole-kernel decoding about tenfold without
// anything to find in it; those tests then do the part the issue requires
// and leave the rest to runs without -race.
const raceEnabled = true
