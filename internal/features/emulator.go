package features

import "sync"

// tcgSignature is what QEMU's TCG (its emulator, as opposed to KVM)
// writes in CPUID leaf 0x40000000's EBX, ECX and EDX: the hypervisor
// leaf, which KVM, Xen, Hyper-V and bhyve fill with their own names.
const tcgSignature = "TCGTCGTCGTCG"

var qemuTCG = sync.OnceValue(func() bool {
	// CPUID.1:ECX bit 31 says a hypervisor's leaves exist.
	if _, _, ecx, _ := cpuid(1, 0); ecx&(1<<31) == 0 {
		return false
	}
	_, b, c, d := cpuid(0x40000000, 0)
	return cpuidString(b, c, d) == tcgSignature
})

// QEMUTCG reports whether the CPU is QEMU's emulator (TCG), which the
// test VM boots on. The splice and kprobe placement rules refuse a few
// places there that are safe on hardware, to keep clear of an
// emulation bug (splice/patch.TCGCmpxchg16bHazard).
func QEMUTCG() bool { return qemuTCG() }

// cpuidString is the twelve characters of three CPUID registers, each
// register's bytes from the lowest.
func cpuidString(regs ...uint32) string {
	b := make([]byte, 0, 4*len(regs))
	for _, r := range regs {
		b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return string(b)
}
