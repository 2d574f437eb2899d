// Package kernelbtf shares the running kernel's BTF among the BPF objects
// one process loads. Every load that resolves kernel types (an fentry or
// tp_btf program finding its target, a CO-RE relocation) decodes
// /sys/kernel/btf/vmlinux unless it is handed a decoded copy: a tenth of
// a second on hardware and a fifth to three quarters of one under
// emulation, paid once per feature probe, per measurement model, per
// stack sampler and per off-CPU program of a hunt before this package.
//
// Cache returns one btf.Cache for as long as anyone holds it: a session
// holds it for its life, so every load in it shares one decoding, and a
// process with no session (a GUI idle between experiments) lets the
// garbage collector take the decoded types back.
package kernelbtf

import (
	"sync"
	"weak"

	"github.com/cilium/ebpf/btf"
)

var (
	mu   sync.Mutex
	last weak.Pointer[btf.Cache]
)

// Cache returns the process's cache of kernel BTF: the one still held by
// someone, else a new one. btf.Cache is safe for concurrent use.
func Cache() *btf.Cache {
	mu.Lock()
	defer mu.Unlock()
	if c := last.Value(); c != nil {
		return c
	}
	c := btf.NewCache()
	last = weak.Make(c)
	return c
}
