package instrument

import (
	"slices"
	"testing"
)

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

// TestSyscall64Entries checks that the 64-bit dispatch's entry functions
// of a syscall are the ABIs IsSyscall64 accepts, native first.
func TestSyscall64Entries(t *testing.T) {
	got := Syscall64Entries("read")
	if want := []string{"__x64_sys_read", "__ia32_sys_read"}; !slices.Equal(got, want) {
		t.Errorf("Syscall64Entries(read) = %q, want %q", got, want)
	}
	for _, fn := range got {
		if !IsSyscall64(fn) {
			t.Errorf("%s: not IsSyscall64", fn)
		}
	}
}
