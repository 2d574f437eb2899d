package offcpu

import (
	"testing"

	"github.com/autoprof/autoprof/internal/cdefines"
)

// TestConstants holds MaxFrames to offcpu.bpf.c's MAX_FRAMES.
func TestConstants(t *testing.T) {
	c, err := cdefines.File("offcpu.bpf.c")
	if err != nil {
		t.Fatal(err)
	}
	if c["MAX_FRAMES"] != MaxFrames {
		t.Errorf("MAX_FRAMES: offcpu.bpf.c has %d, Go has %d", c["MAX_FRAMES"], MaxFrames)
	}
}
