package machine

import "testing"

// TestRoundTrip runs code that sets registers and flags, and checks that
// every register comes back as the code left it.
func TestRoundTrip(t *testing.T) {
	m, err := New(64 << 10)
	if err != nil {
		t.Skipf("no executable mapping here: %v", err)
	}
	defer m.Close()
	code := CodeOff
	// add $5,%rbx; push %rcx; pop %rdx; xor %eax,%eax (ZF=1, CF=0); jmp exit
	b := []byte{0x48, 0x83, 0xc3, 0x05, 0x51, 0x5a, 0x31, 0xc0, 0xe9, 0, 0, 0, 0}
	exit := int64(m.Exit()) - int64(m.Base()+uint64(code+len(b)))
	b[9], b[10], b[11], b[12] = byte(exit), byte(exit>>8), byte(exit>>16), byte(exit>>24)
	copy(m.Mem()[code:], b)
	var in Regs
	for i := range in.GPR {
		in.GPR[i] = 0x1111 * uint64(i+1)
	}
	in.GPR[RSP] = m.Base() + uint64(len(m.Mem())) - 64
	in.RFLAGS = 1 // CF
	out := m.Run(m.Base()+uint64(code), in)
	want := in.GPR
	want[RAX], want[RBX], want[RDX] = 0, in.GPR[RBX]+5, in.GPR[RCX]
	if out.GPR != want {
		t.Errorf("registers\n got %x\nwant %x", out.GPR, want)
	}
	if out.RFLAGS&0x40 == 0 || out.RFLAGS&1 != 0 {
		t.Errorf("flags %#x: want ZF set and CF cleared by xor", out.RFLAGS)
	}
}
