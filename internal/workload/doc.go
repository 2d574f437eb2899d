// Package workload holds apload (apload.c), the bundled workloads of
// autoprof's demo and real-workload tests: a pipe ping-pong, a stat storm
// over a deep directory tree and an fsync loop, each making an exactly
// known number of system calls. It is built freestanding and static with
// make -C internal/workload, so that it runs in the test VMs, and it is
// single-threaded, so that a hunt's shares are of one thread's time.
package workload
