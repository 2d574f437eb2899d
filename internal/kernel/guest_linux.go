package kernel

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// PowerOff syncs file systems and powers the machine off. The VM test
// harness's init calls it when its command is done.
func PowerOff() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// MakeRaw puts the terminal f into raw mode, so that output bytes pass
// unchanged (no "\n" to "\r\n" translation).
func MakeRaw(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("reading termios of %s: %w", f.Name(), err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("setting raw mode on %s: %w", f.Name(), err)
	}
	return nil
}

// ReadRecords reads a record-oriented file such as /dev/kmsg to its
// current end without waiting for more: it opens it non-blocking and calls
// read(2) until EAGAIN, passing each record to fn. Records lost to
// overwriting (EPIPE) are skipped.
func ReadRecords(path string, fn func(record []byte)) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EPIPE || err == unix.EINTR:
			continue
		case err == unix.EAGAIN || n == 0:
			return nil
		case err != nil:
			return fmt.Errorf("reading %s: %w", path, err)
		}
		fn(buf[:n])
	}
}

// LinkUp sets a network interface up (the VM's init brings up lo).
func LinkUp(name string) error {
	fd, ifr, err := ifreqSocket(name)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	return nil
}

// ifreqSocket opens a socket for the interface ioctls and the request of
// interface name; the caller closes fd.
func ifreqSocket(name string) (fd int, ifr *unix.Ifreq, err error) {
	if ifr, err = unix.NewIfreq(name); err != nil {
		return -1, nil, err
	}
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	return fd, ifr, err
}

// SetIPv4 gives the interface name the address addr with a prefix of
// bits (a guest's only address on QEMU's user network).
func SetIPv4(name string, addr [4]byte, bits int) error {
	fd, ifr, err := ifreqSocket(name)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := ifr.SetInet4Addr(addr[:]); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("giving %s its address: %w", name, err)
	}
	mask := uint32(0xffffffff) << (32 - bits)
	if err := ifr.SetInet4Addr([]byte{byte(mask >> 24), byte(mask >> 16), byte(mask >> 8), byte(mask)}); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("giving %s its netmask: %w", name, err)
	}
	return nil
}

// SetMemlockInfinity lifts RLIMIT_MEMLOCK (BPF maps on kernels before 5.11
// are charged to it).
func SetMemlockInfinity() error {
	return unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
}
