package kernel

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CPUClockEvent opens a disabled cpu-clock sampling event on one CPU for
// all tasks at freq samples per second, for a BPF perf_event program to
// consume (no ring buffer is mapped: the program sees every sample and
// returns 0, so none is written). Enable it with PerfEnable once the
// program is attached. The returned file owns the event.
func CPUClockEvent(cpu int, freq uint64) (*os.File, error) {
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_CPU_CLOCK,
		Size:   uint32(unsafeSizeofPerfEventAttr),
		Sample: freq,
		Bits:   unix.PerfBitFreq | unix.PerfBitDisabled,
	}
	fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("perf_event_open cpu-clock on cpu %d: %w", cpu, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("perf-cpu-clock-%d", cpu)), nil
}

// unsafeSizeofPerfEventAttr is the size of the perf_event_attr we fill
// (PERF_ATTR_SIZE_VER7, Linux 5.13): older kernels accept it while the
// fields past their own size are zero.
const unsafeSizeofPerfEventAttr = unix.PERF_ATTR_SIZE_VER7

// PerfEnable starts a perf event.
func PerfEnable(f *os.File) error {
	if err := unix.IoctlSetInt(int(f.Fd()), unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
		return fmt.Errorf("enabling %s: %w", f.Name(), err)
	}
	return nil
}

// PerfDisable stops a perf event; PerfEnable starts it again.
func PerfDisable(f *os.File) error {
	if err := unix.IoctlSetInt(int(f.Fd()), unix.PERF_EVENT_IOC_DISABLE, 0); err != nil {
		return fmt.Errorf("disabling %s: %w", f.Name(), err)
	}
	return nil
}

// OnlineCPUs returns the online CPUs' numbers, from
// /sys/devices/system/cpu/online.
func OnlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	return cpuList(string(b))
}

// cpuList expands a list such as "0-3,5" into CPU numbers.
func cpuList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}
