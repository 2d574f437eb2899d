package splice

import "testing"

// TestSyscall checks the one rule for syscall entry functions against the
// wrappers of arch/x86/include/asm/syscall_wrapper.h.
func TestSyscall(t *testing.T) {
	for _, tc := range []struct {
		fn         string
		name       string
		native, ok bool
		dispatch64 bool
	}{
		{"__x64_sys_read", "read", true, true, true},
		{"__ia32_sys_getppid", "getppid", false, true, true},
		{"__x32_compat_sys_ioctl", "ioctl", false, true, false},
		{"__ia32_compat_sys_ioctl", "ioctl", false, true, false},
		{"__x64_sys_ni_syscall", "ni_syscall", true, true, true},
		{"__se_sys_read", "", false, false, false},
		{"__do_sys_read", "", false, false, false},
		{"ksys_read", "", false, false, false},
		{"do_syscall_64", "", false, false, false},
		{"x64_sys_call", "", false, false, false},
		{"", "", false, false, false},
	} {
		name, native, ok := Syscall(tc.fn)
		if name != tc.name || native != tc.native || ok != tc.ok || IsSyscall(tc.fn) != tc.ok || IsSyscall64(tc.fn) != tc.dispatch64 {
			t.Errorf("%q: Syscall = %q, %v, %v, IsSyscall %v, IsSyscall64 %v; want %q, %v, %v, %v, %v",
				tc.fn, name, native, ok, IsSyscall(tc.fn), IsSyscall64(tc.fn), tc.name, tc.native, tc.ok, tc.ok, tc.dispatch64)
		}
	}
}

// TestSyscallNumber checks that a syscall the kernel serves with its
// __ia32_sys_ function is found by either 64-bit name, and that compat
// entry functions have no number in the 64-bit table.
func TestSyscallNumber(t *testing.T) {
	tab := NewSyscallTable(map[string]int{"__x64_sys_read": 0, "__ia32_sys_getppid": 110})
	for _, tc := range []struct {
		fn string
		nr int
		ok bool
	}{
		{"__x64_sys_read", 0, true},
		{"__ia32_sys_read", 0, true},
		{"__x64_sys_getppid", 110, true},
		{"__ia32_sys_getppid", 110, true},
		{"__ia32_compat_sys_read", 0, false},
		{"__x32_compat_sys_read", 0, false},
		{"__x64_sys_ni_syscall", 0, false},
		{"__x64_sys_write", 0, false},
		{"ksys_read", 0, false},
	} {
		if nr, ok := tab.Number(tc.fn); nr != tc.nr || ok != tc.ok {
			t.Errorf("Number(%q) = %d, %v; want %d, %v", tc.fn, nr, ok, tc.nr, tc.ok)
		}
	}
}
