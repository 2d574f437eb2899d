// Package guest is the init process of autoprof's test VMs: it mounts the
// pseudo file systems, loads kernel modules, runs one command with its
// output on the second serial port, reports how the command and the kernel
// fared, sends back the files the command left in the output directory,
// and powers the machine off.
//
// The host side (package vmtest) and this package talk through ConfigPath
// in the initramfs and framed lines on the output port, defined here.
package guest

// Paths inside the guest.
const (
	ConfigPath = "/vmtest/config.json" // the Config, written by the host
	OutDir     = "/vmtest/out"         // files left here come back to the host
	OutputTTY  = "/dev/ttyS1"          // the command's stdout and stderr
)

// VMEnv is set (to "1") in the environment of the command the guest runs:
// a test reads it to know that it runs on one of the test VM's known
// kernels (see internal/features/featuretest).
const VMEnv = "AUTOPROF_VM"

// Config is what the host asks the guest to do.
type Config struct {
	Args    []string `json:"args"`    // the command; Args[0] is a guest path
	Dir     string   `json:"dir"`     // its working directory
	Env     []string `json:"env"`     // added to a minimal environment
	Modules []string `json:"modules"` // kernel modules to load first, in order (guest paths)
	// Network brings eth0 up as 10.0.2.15/24, QEMU's user network, once
	// the modules are loaded (Config.Forward on the host).
	Network bool `json:"network"`
}

// GuestIP is the guest's address on QEMU's user network.
var GuestIP = [4]byte{10, 0, 2, 15}

// Marker starts every protocol line on the output port. The command's own
// output comes before the first marker line.
const Marker = "#autoprof-vmtest# "

// Protocol lines, each Marker + one of these + arguments:
//
//	status <exit code> <tainted>   the command ended; tainted is /proc/sys/kernel/tainted
//	error <message>                the guest could not run the command
//	kmsg <n>                       n bytes of kernel log follow
//	out <n>                        n bytes of a tar archive of OutDir follow
//	end                            nothing more follows
const (
	LineStatus = "status"
	LineError  = "error"
	LineKmsg   = "kmsg"
	LineOut    = "out"
	LineEnd    = "end"
)

// Taint bits (include/linux/panic.h) that fail a test run: a WARN, an oops,
// a soft lockup, a machine check, a bad page.
const (
	TaintBadPage    = 1 << 5
	TaintDie        = 1 << 7
	TaintWarn       = 1 << 9
	TaintSoftLockup = 1 << 14
	TaintMachine    = 1 << 4

	FailingTaints = TaintBadPage | TaintDie | TaintWarn | TaintSoftLockup | TaintMachine
)
