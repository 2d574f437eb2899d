// Package splice turns instrument specs into live instruments in the running
// kernel, reads them, and withdraws them.
//
// An instrument.Spec is a plain value. An instrument.Instrumenter (one per
// backend, one file per backend) checks a Spec against every placement
// rule before it touches the kernel, inserts it, and owns what it
// inserted: every kernel object is held by a file descriptor (BPF links,
// perf events, the splice module's device), so that nothing stays behind
// when the process exits or is killed. Close is idempotent.
package splice
