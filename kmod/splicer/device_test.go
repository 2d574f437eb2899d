package splicer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/autoprof/autoprof/internal/kernel"
)

// TestRemovedIsENOTTY: once the module has gone, procfs answers the
// session's ioctls with ENOTTY, as the kernel answers an ioctl a file does
// not implement; a regular file stands in for the removed entry here.
func TestRemovedIsENOTTY(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "not-the-module"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = ioctl(f, iocBeat, nil)
	if !errors.Is(err, ErrRemoved) || !errors.Is(err, kernel.ENOTTY) {
		t.Fatalf("an ioctl answered ENOTTY: %v, want ErrRemoved wrapping ENOTTY", err)
	}
	d := &Device{f: f}
	if err := d.Beat(); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Beat on a removed module's file: %v, want ErrRemoved", err)
	}
}
