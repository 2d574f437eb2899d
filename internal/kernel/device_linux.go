package kernel

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// More errnos for callers of devices and modules.
var (
	ESTALE    error = unix.ESTALE
	ETIMEDOUT error = unix.ETIMEDOUT
	ENOTTY    error = unix.ENOTTY
	ENOSPC    error = unix.ENOSPC
	ERANGE    error = unix.ERANGE
	ENOTCONN  error = unix.ENOTCONN
	EALREADY  error = unix.EALREADY
)

// OpenDevice opens a character device read-write, close-on-exec.
func OpenDevice(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Ioctl issues request on f with a pointer argument. keep holds Go memory
// that the argument points to indirectly (a buffer whose address is a
// field of *arg): it stays alive until the call returns.
func Ioctl(f *os.File, request uint32, arg unsafe.Pointer, keep ...any) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	err = conn.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(request), uintptr(arg))
	})
	runtime.KeepAlive(keep)
	if err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// MapReadOnly maps length bytes of f from offset 0, shared and read-only.
func MapReadOnly(f *os.File, length int) ([]byte, error) {
	b, err := unix.Mmap(int(f.Fd()), 0, length, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	return b, nil
}

// MapExecutable maps length bytes of anonymous memory that is readable,
// writable and executable: for tests that run generated machine code.
func MapExecutable(length int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, length, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap of %d executable bytes: %w", length, err)
	}
	return b, nil
}

// Unmap unmaps memory from MapReadOnly or MapExecutable.
func Unmap(b []byte) error { return unix.Munmap(b) }
