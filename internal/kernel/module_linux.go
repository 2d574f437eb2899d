package kernel

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FinitModule loads the kernel module in f with the given parameters.
// Compressed modules (.ko.xz, .ko.zst) are passed with
// MODULE_INIT_COMPRESSED_FILE so that the kernel decompresses them.
func FinitModule(f *os.File, params string, compressed bool) error {
	flags := 0
	if compressed {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), params, flags); err != nil {
		return fmt.Errorf("finit_module %s: %w", f.Name(), err)
	}
	return nil
}

// DeleteModule unloads a module by name, without waiting (O_NONBLOCK).
func DeleteModule(name string) error {
	if err := unix.DeleteModule(name, unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("delete_module %s: %w", name, err)
	}
	return nil
}

// MemFile returns an anonymous in-memory file holding data.
func MemFile(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
