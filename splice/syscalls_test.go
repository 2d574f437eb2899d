package splice

import "testing"

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
