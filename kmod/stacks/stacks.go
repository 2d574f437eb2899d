// Package stacks loads the stack-sampling program (stacks.bpf.c): a
// perf_event program that aggregates cpu-clock samples by kernel call
// chain inside the kernel. Package splice attaches it (OpenSampler).
package stacks

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/autoprof/autoprof/internal/bpfmaps"
	"github.com/autoprof/autoprof/internal/kernelbtf"
)

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel stacks stacks.bpf.c

// MaxFrames is MAX_FRAMES in stacks.bpf.c.
const MaxFrames = 127

// Objects are the loaded program and maps.
type Objects struct {
	o      stacksObjects
	chains bpfmaps.Chains
}

// Load loads the program with room for maxStacks distinct call chains.
func Load(maxStacks int) (*Objects, error) {
	spec, err := loadStacks()
	if err != nil {
		return nil, fmt.Errorf("loading the stack sampler: %w", err)
	}
	spec.Maps["stacks"].MaxEntries = uint32(maxStacks)
	spec.Maps["counts"].MaxEntries = uint32(maxStacks)
	_ = rlimit.RemoveMemlock()
	o := &Objects{}
	if err := spec.LoadAndAssign(&o.o, &ebpf.CollectionOptions{Cache: kernelbtf.Cache()}); err != nil {
		return nil, fmt.Errorf("loading the stack sampler: %w", err)
	}
	return o, nil
}

// Program returns the perf_event program.
func (o *Objects) Program() *ebpf.Program { return o.o.Sample }

// SetFilter sets the target: tgids (none: every task) and a cgroup
// directory fd (-1: none).
func (o *Objects) SetFilter(pids []uint32, cgroupFD int) error {
	if err := bpfmaps.SetTargetFilter(o.o.Pids, o.o.Cgroup, o.o.Config, pids, cgroupFD); err != nil {
		return fmt.Errorf("the sampler's target: %w", err)
	}
	return nil
}

// Stack is one call chain, innermost address first, and its samples.
type Stack struct {
	Addrs []uint64
	Count uint64
}

// Stacks returns every call chain sampled so far. The counts are read in
// batches, a chain's addresses once per id (bpfmaps.Chains).
func (o *Objects) Stacks() ([]Stack, error) {
	var out []Stack
	var lookupErr error
	each := func(id uint32, n []uint64) {
		addrs, err := o.chains.Chain(o.o.Stacks, id, MaxFrames)
		if err != nil {
			lookupErr = err
			return
		}
		if addrs != nil {
			out = append(out, Stack{Addrs: addrs, Count: n[0]})
		}
	}
	err := bpfmaps.ReadHash(o.o.Counts, 1, each, func() error {
		var id uint32
		var n uint64
		it := o.o.Counts.Iterate()
		for it.Next(&id, &n) {
			each(id, []uint64{n})
		}
		return it.Err()
	})
	if err == nil {
		err = lookupErr
	}
	if err != nil {
		return nil, fmt.Errorf("reading sample counts: %w", err)
	}
	return out, nil
}

// Counters are the samples not in Stacks.
type Counters struct {
	User, Lost, Filtered uint64
}

// Counters reads them.
func (o *Objects) Counters() (Counters, error) {
	var v [3]uint64
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return Counters{}, err
	}
	per := make([]uint64, ncpu)
	for i := range v {
		if err := o.o.Counters.Lookup(uint32(i), &per); err != nil {
			return Counters{}, fmt.Errorf("reading sampler counters: %w", err)
		}
		for _, n := range per {
			v[i] += n
		}
	}
	return Counters{User: v[0], Lost: v[1], Filtered: v[2]}, nil
}

// Close unloads everything. A second call returns os.ErrClosed.
func (o *Objects) Close() error {
	if o.o.Sample == nil {
		return os.ErrClosed
	}
	err := o.o.Close()
	o.o = stacksObjects{}
	return err
}
