// Package offcpu loads the off-CPU program (offcpu.bpf.c): a sched_switch
// program that adds up, in the kernel, the time the target's threads
// spend blocked, by kernel call chain and syscall. Package splice attaches
// it (OpenOffCPU).
package offcpu

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/autoprof/autoprof/internal/bpfmaps"
	"github.com/autoprof/autoprof/internal/kernelbtf"
)

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel offcpu offcpu.bpf.c

// MaxFrames is MAX_FRAMES in offcpu.bpf.c.
const MaxFrames = 127

// Objects are the loaded program and maps.
type Objects struct {
	o      offcpuObjects
	chains bpfmaps.Chains
}

// Load loads the program with room for maxStacks distinct call chains
// and maxThreads threads blocked at once.
func Load(maxStacks, maxThreads int) (*Objects, error) {
	spec, err := loadOffcpu()
	if err != nil {
		return nil, fmt.Errorf("loading the off-CPU program: %w", err)
	}
	spec.Maps["stacks"].MaxEntries = uint32(maxStacks)
	spec.Maps["totals"].MaxEntries = uint32(maxStacks)
	spec.Maps["starts"].MaxEntries = uint32(maxThreads)
	_ = rlimit.RemoveMemlock()
	o := &Objects{}
	if err := spec.LoadAndAssign(&o.o, &ebpf.CollectionOptions{Cache: kernelbtf.Cache()}); err != nil {
		return nil, fmt.Errorf("loading the off-CPU program: %w", err)
	}
	return o, nil
}

// Program returns the sched_switch program (tp_btf).
func (o *Objects) Program() *ebpf.Program { return o.o.Offcpu }

// SetFilter sets the target: tgids (none: every task) and a cgroup
// directory fd (-1: none).
func (o *Objects) SetFilter(pids []uint32, cgroupFD int) error {
	if err := bpfmaps.SetTargetFilter(o.o.Pids, o.o.Cgroup, o.o.Config, pids, cgroupFD); err != nil {
		return fmt.Errorf("the off-CPU program's target: %w", err)
	}
	return nil
}

// Wait is what a blocked thread waits in: its kernel call chain (by id in
// the stack map) and the syscall it is in (-1: none).
type Wait struct {
	Stack int32
	Nr    int32
}

// Total is the waits that ended in one place.
type Total struct {
	Ns    uint64
	Count uint64
}

// Start is a thread's last wait: from At to End (CLOCK_MONOTONIC ns; End
// is 0 while it lasts), in Wait.
type Start struct {
	At, End uint64
	Wait    Wait
}

// Totals returns the waits that ended so far, by where they waited, read
// in batches.
func (o *Objects) Totals() (map[Wait]Total, error) {
	out := map[Wait]Total{}
	each := func(w offcpuWait, t []offcpuTotal) {
		out[Wait{Stack: w.Stack, Nr: w.Nr}] = Total{Ns: t[0].Ns, Count: t[0].Count}
	}
	err := bpfmaps.ReadHash(o.o.Totals, 1, each, func() error {
		var w offcpuWait
		var t offcpuTotal
		it := o.o.Totals.Iterate()
		for it.Next(&w, &t) {
			each(w, []offcpuTotal{t})
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reading off-CPU totals: %w", err)
	}
	return out, nil
}

// Starts returns each thread's last wait, by thread id, read in batches.
func (o *Objects) Starts() (map[uint32]Start, error) {
	out := map[uint32]Start{}
	each := func(tid uint32, s []offcpuStart) {
		out[tid] = Start{At: s[0].At, End: s[0].End, Wait: Wait{Stack: s[0].W.Stack, Nr: s[0].W.Nr}}
	}
	err := bpfmaps.ReadHash(o.o.Starts, 1, each, func() error {
		var tid uint32
		var s offcpuStart
		it := o.o.Starts.Iterate()
		for it.Next(&tid, &s) {
			each(tid, []offcpuStart{s})
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reading the threads' last off-CPU waits: %w", err)
	}
	return out, nil
}

// Stack returns a call chain of the stack map, innermost address first;
// nil if the map does not hold it (bpfmaps.Chains: each id read once).
func (o *Objects) Stack(id int32) ([]uint64, error) {
	return o.chains.Chain(o.o.Stacks, uint32(id), MaxFrames)
}

// Lost is the number of waits not counted: no stack could be taken, or a
// map was full.
func (o *Objects) Lost() (uint64, error) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, err
	}
	per := make([]uint64, ncpu)
	if err := o.o.Counters.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("reading off-CPU counters: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Close unloads everything. A second call returns os.ErrClosed.
func (o *Objects) Close() error {
	if o.o.Offcpu == nil {
		return os.ErrClosed
	}
	err := o.o.Close()
	o.o = offcpuObjects{}
	return err
}
