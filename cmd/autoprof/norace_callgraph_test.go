//go:build !race

package main

// raceDetector: see race_callgraph_test.go.
const raceDetector = false
