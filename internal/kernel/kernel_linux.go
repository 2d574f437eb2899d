// Package kernel is autoprof's one door to golang.org/x/sys/unix: every
// system call autoprof makes outside cilium/ebpf goes through here, so that
// what autoprof asks of the kernel can be read in one place.
package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Common errnos, re-exported so that callers can test errors.Is without
// importing unix.
var (
	EPERM        error = unix.EPERM
	EACCES       error = unix.EACCES
	ENOENT       error = unix.ENOENT
	ENOSYS       error = unix.ENOSYS
	EINVAL       error = unix.EINVAL
	EBUSY        error = unix.EBUSY
	EEXIST       error = unix.EEXIST
	ENOEXEC      error = unix.ENOEXEC
	EKEYREJECTED error = unix.EKEYREJECTED
	EOPNOTSUPP   error = unix.EOPNOTSUPP
	ENODEV       error = unix.ENODEV
)

// Release returns the running kernel's release, what uname -r prints.
func Release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return string(bytes.TrimRight(u.Release[:], "\x00")), nil
}

// NumCPU returns the number of possible CPUs (the size of per-CPU maps),
// from /sys/devices/system/cpu/possible.
func NumCPU() (int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 0, err
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

// parseCPUList counts the CPUs in a list such as "0-3,5,7-8".
func parseCPUList(s string) (int, error) {
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

// Errno returns the errno inside err, or 0.
func Errno(err error) int {
	var e unix.Errno
	if errors.As(err, &e) {
		return int(e)
	}
	return 0
}

// ErrnoName returns the symbolic name of the errno inside err ("EPERM"),
// or "" when err carries none.
func ErrnoName(err error) string {
	var e unix.Errno
	if !errors.As(err, &e) {
		return ""
	}
	return unix.ErrnoName(e)
}

// ProcessCPU returns the CPU time, user and system, that this process's
// threads have used so far (getrusage(RUSAGE_SELF)); the children it
// started are not in it.
func ProcessCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// MonotonicNs returns CLOCK_MONOTONIC in nanoseconds: the clock of BPF's
// bpf_ktime_get_ns, so that times stamped by a BPF program compare with it.
func MonotonicNs() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC): %w", err)
	}
	return uint64(ts.Nano()), nil
}
