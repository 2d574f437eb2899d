package bpfmaps

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Target filter flags (F_* in kmod/include/target.h).
const (
	filterPIDs   = 1
	filterCgroup = 2
)

// SetTargetFilter sets the target filter of kmod/include/target.h through
// its three maps: tgids (none: every task) and a cgroup directory fd (-1:
// none).
func SetTargetFilter(pidsMap, cgroupMap, configMap *ebpf.Map, tgids []uint32, cgroupFD int) error {
	var flags uint32
	for _, p := range tgids {
		if err := pidsMap.Update(p, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("setting the pid filter: %w", err)
		}
		flags |= filterPIDs
	}
	if cgroupFD >= 0 {
		if err := cgroupMap.Update(uint32(0), uint32(cgroupFD), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("setting the cgroup filter: %w", err)
		}
		flags |= filterCgroup
	}
	return configMap.Update(uint32(0), flags, ebpf.UpdateAny)
}

// Chains reads call chains out of a BPF stack map, each id once: an id's
// chain never changes while the programs that fill the map do not ask to
// reuse ids (no BPF_F_REUSE_STACKID).
type Chains struct {
	read map[uint32][]uint64
}

// Chain returns the call chain of id in m (frames of maxFrames entries),
// innermost address first; nil where the map does not hold it.
func (c *Chains) Chain(m *ebpf.Map, id uint32, maxFrames int) ([]uint64, error) {
	if addrs, ok := c.read[id]; ok {
		return addrs, nil
	}
	frames := make([]uint64, maxFrames)
	if err := m.Lookup(id, &frames); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading stack %d: %w", id, err)
	}
	n := 0
	for n < len(frames) && frames[n] != 0 {
		n++
	}
	if c.read == nil {
		c.read = map[uint32][]uint64{}
	}
	c.read[id] = frames[:n:n]
	return c.read[id], nil
}
