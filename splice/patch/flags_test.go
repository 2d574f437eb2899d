package patch

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func TestFlagsDead(t *testing.T) {
	dec := func(b ...byte) x86asm.Inst {
		in, err := x86asm.Decode(b, 64)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	var (
		mov  = dec(0x48, 0x89, 0xe5)       // mov %rsp,%rbp
		cmp  = dec(0x83, 0xff, 0x01)       // cmp $1,%edi
		inc  = dec(0x48, 0xff, 0xc0)       // inc %rax
		je   = dec(0x74, 0x02)             // je
		adc  = dec(0x48, 0x11, 0xc0)       // adc %rax,%rax
		shl1 = dec(0x48, 0xc1, 0xe0, 0x01) // shl $1,%rax
		shlc = dec(0x48, 0xd3, 0xe0)       // shl %cl,%rax
		call = dec(0xe8, 0, 0, 0, 0)
		pref = dec(0x0f, 0x18, 0x0c, 0x03) // prefetcht0 (%rbx,%rax,1)
	)
	for _, c := range []struct {
		name string
		seq  []x86asm.Inst
		dead bool
	}{
		{"cmp first", []x86asm.Inst{cmp, je}, true},
		{"moves, then cmp", []x86asm.Inst{mov, mov, cmp}, true},
		{"je reads", []x86asm.Inst{mov, je, cmp}, false},
		{"inc keeps CF for adc", []x86asm.Inst{inc, adc}, false},
		{"inc, then cmp", []x86asm.Inst{inc, cmp}, true},
		{"shl by 1 writes", []x86asm.Inst{shl1}, true},
		{"shl by cl may not", []x86asm.Inst{shlc, cmp}, false},
		{"a call is unknown", []x86asm.Inst{call, cmp}, false},
		// The allocator after its cmpxchg16b: mov, prefetcht0, mov, test.
		{"prefetch neither reads nor writes", []x86asm.Inst{mov, pref, mov, cmp}, true},
		{"the end comes first", []x86asm.Inst{mov}, false},
	} {
		if got := FlagsDead(c.seq); got != c.dead {
			t.Errorf("%s: FlagsDead = %v, want %v", c.name, got, c.dead)
		}
	}
}
