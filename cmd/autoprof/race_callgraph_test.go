//go:build race

package main

// raceDetector is set under the race detector, which slows decompressing
// Debian's xz-compressed 6.1 image tenfold; the offline command tests then
// use only 6.12 (zstd).
const raceDetector = true
