//go:build !amd64

package features

// cpuid is x86's alone: elsewhere it answers zeroes (no hypervisor leaf).
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32) { return 0, 0, 0, 0 }
