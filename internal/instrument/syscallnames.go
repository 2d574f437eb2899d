package instrument

import "strings"

// syscallABIs are the kernel's syscall entry functions, one prefix per
// ABI (the SYSCALL_DEFINE wrappers of
// arch/x86/include/asm/syscall_wrapper.h), native first. dispatch64 says
// the 64-bit dispatch (sys_call_table, x64_sys_call) may call them:
// __x64_sys_ always, __ia32_sys_ on kernels that serve syscalls without
// arguments with one function for both ABIs.
var syscallABIs = []struct {
	prefix     string
	dispatch64 bool
}{
	{"__x64_sys_", true}, {"__ia32_sys_", true}, {"__x32_compat_sys_", false}, {"__ia32_compat_sys_", false},
}

// Syscall takes apart the name of a syscall entry function: the syscall
// it serves and whether it is the native x86-64 entry ("read", true for
// __x64_sys_read; "read", false for __ia32_sys_read). ok is false for
// any other function.
func Syscall(fn string) (name string, native, ok bool) {
	for i, abi := range syscallABIs {
		if name, ok := strings.CutPrefix(fn, abi.prefix); ok {
			return name, i == 0, true
		}
	}
	return "", false, false
}

// IsSyscall reports whether fn is a syscall entry function of any ABI.
func IsSyscall(fn string) bool {
	_, _, ok := Syscall(fn)
	return ok
}

// IsSyscall64 reports whether fn is a syscall entry function that the
// 64-bit dispatch may call: those the tracepoint backend times, by their
// number in sys_call_table.
func IsSyscall64(fn string) bool {
	for _, abi := range syscallABIs {
		if strings.HasPrefix(fn, abi.prefix) {
			return abi.dispatch64
		}
	}
	return false
}

// Syscall64Entries returns the entry functions of syscall name ("read")
// that the 64-bit dispatch may call, native first: __x64_sys_read and
// __ia32_sys_read.
func Syscall64Entries(name string) []string {
	var fns []string
	for _, abi := range syscallABIs {
		if abi.dispatch64 {
			fns = append(fns, abi.prefix+name)
		}
	}
	return fns
}
