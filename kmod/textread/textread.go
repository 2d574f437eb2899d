// Package textread reads live kernel memory through a BPF program that
// calls bpf_probe_read_kernel, run on demand with BPF_PROG_TEST_RUN. It is
// the text reader of last resort where /proc/kcore is missing (kernels
// without CONFIG_PROC_KCORE, or under lockdown integrity, which hides kcore
// but still lets root load tracing BPF).
//
// A read costs two system calls per 4 KiB (one program run, one map
// lookup); the whole core text of a 6.18 kernel (19 MB) reads in under
// 0.1 s, so the chunk is left at one page.
package textread

import (
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/cilium/ebpf"
)

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type chunk textread textread.bpf.c

// chunkSize is CHUNK in textread.bpf.c: the most one program run copies.
const chunkSize = 4096

// Reader reads kernel memory. It is safe for concurrent use.
type Reader struct {
	mu      sync.Mutex
	objs    *textreadObjects // nil once closed
	cleanup runtime.Cleanup
	args    [16]byte
	chunk   textreadChunk
}

// Open loads the reader's program.
func Open() (*Reader, error) {
	objs := &textreadObjects{}
	if err := loadTextreadObjects(objs, nil); err != nil {
		return nil, fmt.Errorf("loading the BPF text reader: %w", err)
	}
	r := &Reader{objs: objs}
	// A backstop for a Reader that is dropped without Close.
	r.cleanup = runtime.AddCleanup(r, func(o *textreadObjects) { o.Close() }, objs)
	return r, nil
}

// ReadAt fills p with kernel memory from addr. It reports an error naming
// the address where the kernel cannot read it (unmapped, or not kernel
// memory).
func (r *Reader) ReadAt(p []byte, addr uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs == nil {
		return fmt.Errorf("reading kernel memory at %#x: %w", addr, os.ErrClosed)
	}
	for len(p) > 0 {
		n := min(len(p), chunkSize)
		if err := r.readChunk(p[:n], addr); err != nil {
			return err
		}
		p, addr = p[n:], addr+uint64(n)
	}
	return nil
}

func (r *Reader) readChunk(p []byte, addr uint64) error {
	putUint64(r.args[0:], addr)
	putUint64(r.args[8:], uint64(len(p)))
	ret, err := r.objs.ReadText.Run(&ebpf.RunOptions{Context: r.args[:]})
	if err != nil {
		return fmt.Errorf("reading kernel memory at %#x: running the reader: %w", addr, err)
	}
	if ret != 0 {
		return fmt.Errorf("reading kernel memory at %#x (%d bytes): the kernel cannot read it (reader status %d)", addr, len(p), ret)
	}
	if err := r.objs.Chunks.Lookup(uint32(0), &r.chunk); err != nil {
		return fmt.Errorf("reading kernel memory at %#x: %w", addr, err)
	}
	copy(p, r.chunk.Data[:])
	return nil
}

// String names the reader.
func (r *Reader) String() string { return "the BPF text reader" }

// Close unloads the program. A second call returns os.ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs == nil {
		return os.ErrClosed
	}
	r.cleanup.Stop()
	err := r.objs.Close()
	r.objs = nil
	return err
}

func putUint64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}
