// Package bpfmaps reads BPF maps with as few system calls as the kernel
// allows.
package bpfmaps

import (
	"errors"

	"github.com/cilium/ebpf"
)

// hashBatch is how many entries of a hash map one BPF_MAP_LOOKUP_BATCH
// reads: more than a hash bucket ever holds (a smaller batch gets ENOSPC).
const hashBatch = 512

// ReadHash calls each with every entry of a hash map and its perKey
// values (one per CPU for a per-CPU map), read in batches where the
// kernel has BPF_MAP_LOOKUP_BATCH (Linux 5.6); where it has not, iterate
// reads them one at a time instead, calling each likewise.
func ReadHash[K, V any](mp *ebpf.Map, perKey int, each func(K, []V), iterate func() error) error {
	keys := make([]K, hashBatch)
	vals := make([]V, hashBatch*perKey)
	var cursor ebpf.MapBatchCursor
	for read := 0; ; {
		n, err := mp.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			each(keys[i], vals[i*perKey:(i+1)*perKey])
		}
		read += n
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported) && read == 0:
			return iterate()
		case err != nil:
			return err
		}
	}
}
