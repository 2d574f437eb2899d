package callgraph

import (
	"debug/elf"
	"fmt"
	"os"
	"sort"
	"sync"
)

// Text reads kernel memory at kernel virtual addresses: live text through
// /proc/kcore or the BPF reader, or an Image's text as built. ReadAt fills
// all of p or returns an error naming the address.
type Text interface {
	ReadAt(p []byte, addr uint64) error
	Close() error
}

// Kcore reads live kernel memory through /proc/kcore, an ELF core file
// whose PT_LOAD segments map kernel virtual addresses (text, modules,
// vmalloc, the direct map) to file offsets. It needs CAP_SYS_RAWIO and a
// kernel with CONFIG_PROC_KCORE and without lockdown confidentiality.
// It is safe for concurrent use.
type Kcore struct {
	path string
	mu   sync.RWMutex
	f    *os.File
	segs []kcoreSegment // by address
}

type kcoreSegment struct {
	addr, size, off uint64
}

// OpenKcore opens a kcore file (normally /proc/kcore) and reads its
// segment table.
func OpenKcore(path string) (*Kcore, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	core, err := elf.NewFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not an ELF core file: %w", path, err)
	}
	k := &Kcore{path: path, f: f}
	for _, p := range core.Progs {
		if p.Type == elf.PT_LOAD && p.Filesz > 0 {
			k.segs = append(k.segs, kcoreSegment{addr: p.Vaddr, size: p.Filesz, off: p.Off})
		}
	}
	if core.Type != elf.ET_CORE || len(k.segs) == 0 {
		f.Close()
		return nil, fmt.Errorf("%s: not a kernel core file (type %v, %d loadable segments)", path, core.Type, len(k.segs))
	}
	sort.Slice(k.segs, func(i, j int) bool { return k.segs[i].addr < k.segs[j].addr })
	return k, nil
}

// String returns the file's path.
func (k *Kcore) String() string { return k.path }

// ReadAt fills p from kernel address addr; the range may span adjacent
// segments.
func (k *Kcore) ReadAt(p []byte, addr uint64) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.f == nil {
		return fmt.Errorf("reading kernel memory at %#x: %s: %w", addr, k.path, os.ErrClosed)
	}
	for len(p) > 0 {
		i := sort.Search(len(k.segs), func(i int) bool { return k.segs[i].addr+k.segs[i].size > addr })
		if i == len(k.segs) || k.segs[i].addr > addr {
			return fmt.Errorf("reading kernel memory at %#x: %s maps no segment there", addr, k.path)
		}
		s := k.segs[i]
		n := min(uint64(len(p)), s.addr+s.size-addr)
		if _, err := k.f.ReadAt(p[:n], int64(s.off+addr-s.addr)); err != nil {
			return fmt.Errorf("reading kernel memory at %#x through %s: %w", addr, k.path, err)
		}
		p, addr = p[n:], addr+n
	}
	return nil
}

// Close closes the file; a second call returns os.ErrClosed.
func (k *Kcore) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return os.ErrClosed
	}
	err := k.f.Close()
	k.f = nil
	return err
}

// KcorePath is the running kernel's kcore file.
const KcorePath = "/proc/kcore"

// MemText is a Text over bytes held in memory: kernel bytes saved
// elsewhere, or a test's fixture. It is safe for concurrent reads once
// filled.
type MemText struct {
	segs []memSegment // by address
}

type memSegment struct {
	addr uint64
	data []byte
}

// Add places data at addr; segments must not overlap.
func (m *MemText) Add(addr uint64, data []byte) {
	m.segs = append(m.segs, memSegment{addr, data})
	sort.Slice(m.segs, func(i, j int) bool { return m.segs[i].addr < m.segs[j].addr })
}

// ReadAt fills p from adjacent segments.
func (m *MemText) ReadAt(p []byte, addr uint64) error {
	at, rest := addr, p
	for len(rest) > 0 {
		i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].addr+uint64(len(m.segs[i].data)) > at })
		if i == len(m.segs) || m.segs[i].addr > at {
			return fmt.Errorf("reading kernel memory at %#x (%d bytes): not in memory", addr, len(p))
		}
		n := copy(rest, m.segs[i].data[at-m.segs[i].addr:])
		rest, at = rest[n:], at+uint64(n)
	}
	return nil
}

// Close does nothing.
func (m *MemText) Close() error { return nil }

// String names the reader.
func (m *MemText) String() string { return "bytes in memory" }
