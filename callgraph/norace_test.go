//go:build !race

package callgraph

// raceEnabled: see race_test.go.
const raceEnabled = false
