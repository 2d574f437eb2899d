package kernelbtf

import (
	"runtime"
	"testing"
)

// TestCacheShared: while one holder keeps the cache, every caller gets
// the same one; once none does, the collector may take it and the next
// caller gets a new one.
func TestCacheShared(t *testing.T) {
	a := Cache()
	runtime.GC()
	if b := Cache(); a != b {
		t.Fatal("a held cache was not shared")
	}
	runtime.KeepAlive(a)
	a = nil
	for range 10 {
		runtime.GC()
		if last.Value() == nil {
			break
		}
	}
	if last.Value() != nil {
		t.Fatal("the cache outlived its holders")
	}
	if Cache() == nil {
		t.Fatal("no new cache")
	}
}
