package kernel

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Pseudo file systems autoprof reads, with their usual mount points and
// magic numbers.
var (
	Tracefs    = PseudoFS{"tracefs", "/sys/kernel/tracing", unix.TRACEFS_MAGIC}
	Debugfs    = PseudoFS{"debugfs", "/sys/kernel/debug", unix.DEBUGFS_MAGIC}
	Securityfs = PseudoFS{"securityfs", "/sys/kernel/security", unix.SECURITYFS_MAGIC}
	Bpffs      = PseudoFS{"bpf", "/sys/fs/bpf", unix.BPF_FS_MAGIC}
)

// PseudoFS is a kernel pseudo file system at its usual place.
type PseudoFS struct {
	Type  string
	Path  string
	Magic int64
}

// Mounted reports whether the file system is mounted at its path.
func (p PseudoFS) Mounted() bool {
	var st unix.Statfs_t
	return unix.Statfs(p.Path, &st) == nil && int64(st.Type) == p.Magic
}

// Ensure mounts the file system at its path unless it is there already,
// and reports whether it mounted it. Distributions mount these at boot;
// minimal systems (containers, some VMs) do not, and perf and bpftool mount
// them the same way.
func (p PseudoFS) Ensure() (mounted bool, err error) {
	if p.Mounted() {
		return false, nil
	}
	if err := unix.Mount(p.Type, p.Path, p.Type, 0, ""); err != nil {
		return false, fmt.Errorf("mounting %s at %s: %w", p.Type, p.Path, err)
	}
	return true, nil
}

// Mount mounts a file system; the VM's init uses it.
func Mount(source, target, fstype string, data string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(source, target, fstype, 0, data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mounting %s at %s: %w", fstype, target, err)
	}
	return nil
}

// LockFile takes an exclusive advisory lock (flock(2)) on path, creating
// it, and waits for it; unlock releases it. Processes that prepare shared
// files (the in-VM tests' host-side builds) take turns with it.
func LockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
