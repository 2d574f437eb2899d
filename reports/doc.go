// Package reports writes what a hunt found and compares two hunts.
//
// Write renders a search.Run into an output directory: a pprof profile of
// the calling-context tree (Profile), report.txt (WriteText), a
// self-contained report.html (WriteHTML), findings.json (Summary),
// hunt.jsonl (WriteTrace) and run.json, the Run itself, which Load reads
// back so that a run can be re-rendered or compared without measuring.
//
// Diff compares two runs context by context: contexts are matched by
// symbol path (exact, then across compiler clone suffixes, inlined frames
// and replaced callees), and each matched context's per-round shares,
// calls per operation and latency histograms are tested (WelchTest,
// HistRankTest) with a Benjamini–Hochberg correction
// (BenjaminiHochberg). WriteDiff renders the Comparison as diff.txt,
// diff.html, diff.json and two profiles for `go tool pprof -diff_base`.
//
// docs/reports.md describes the outputs, the statistics and the figures
// measured on simulated runs.
package reports
