package callgraph

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/autoprof/autoprof/internal/boot"
)

// BenchmarkDecodeKernel builds the CFG of every function of Debian's 6.1
// kernel from its bytes in memory and reports, besides the time, the heap
// the decoded functions hold (code, instructions, blocks, sites).
func BenchmarkDecodeKernel(b *testing.B) {
	_, im, syms := debian(b, "6.1")
	start, end, _ := syms.CoreText()
	code := make([]byte, end-start)
	if err := im.ReadAt(code, start); err != nil {
		b.Fatal(err)
	}
	funcs := syms.Functions()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		before := heapInUse()
		b.StartTimer()
		all := decodeAll(b, syms, funcs, code, start, 1)
		b.StopTimer()
		b.ReportMetric(float64(heapInUse()-before)/(1<<20), "MiB-held")
		b.ReportMetric(float64(len(all)), "functions")
		runtime.KeepAlive(all)
		b.StartTimer()
	}
}

// BenchmarkDecodeKernelParallel is BenchmarkDecodeKernel over GOMAXPROCS
// goroutines, as Graph.Callers decodes the text.
func BenchmarkDecodeKernelParallel(b *testing.B) {
	_, im, syms := debian(b, "6.1")
	start, end, _ := syms.CoreText()
	code := make([]byte, end-start)
	if err := im.ReadAt(code, start); err != nil {
		b.Fatal(err)
	}
	funcs := syms.Functions()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.KeepAlive(decodeAll(b, syms, funcs, code, start, runtime.GOMAXPROCS(0)))
	}
}

func decodeAll(b *testing.B, syms *Symbols, funcs []Symbol, code []byte, start uint64, workers int) []*Function {
	out := make([]*Function, len(funcs))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(funcs); i += workers {
				fn := funcs[i]
				f, err := Decode(fn, code[fn.Addr-start:fn.End()-start], syms)
				if err != nil {
					b.Error(err)
					return
				}
				out[i] = f
			}
		}()
	}
	wg.Wait()
	return out
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkLoadSymbols: the symbol table of the running kernel read back
// from the boot's cache, as every hunt after the first in a boot starts.
func BenchmarkLoadSymbols(b *testing.B) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		b.Skip(err)
	}
	syms, err := ParseKallsyms(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	c := boot.CacheAt(filepath.Join(b.TempDir(), symbolCacheName))
	mods := []byte("none\n")
	if err := storeSymbols(c, mods, syms); err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, ok := loadSymbols(c, mods); !ok {
			b.Fatal("not loaded")
		}
	}
}
