package features

// cpuid executes CPUID with EAX=leaf and ECX=sub (cpuid_amd64.s).
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
