package pass

import "testing"

func TestOne(t *testing.T) { t.Log("quiet unless verbose") }

func TestTwo(t *testing.T) {}

func BenchmarkNop(b *testing.B) {
	for range b.N {
	}
}
