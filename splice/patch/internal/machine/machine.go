// Package machine runs short sequences of x86-64 machine code in user
// space with every general-purpose register and RFLAGS set beforehand and
// captured afterwards: the harness of the splicer's differential tests,
// which run each displaced instruction sequence in place and relocated and
// compare registers, flags and memory.
//
// A Mapping is one read-write-execute mapping: a state page, the launch
// and exit stubs, and room for the code, data and stack of a test. Code
// under test runs on its own stack, in the mapping, and ends by jumping to
// Exit.
package machine

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/autoprof/autoprof/internal/kernel"
)

// Regs are the general-purpose registers, in encoding order, and RFLAGS.
type Regs struct {
	GPR    [16]uint64 // rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15
	RFLAGS uint64
}

// Register numbers of Regs.GPR.
const (
	RAX = iota
	RCX
	RDX
	RBX
	RSP
	RBP
	RSI
	RDI
)

// state is the first page: what enter saves of Go's registers, and the
// registers in and out.
type state struct {
	goSP, goBP, goR14, goR15 uint64
	entry                    uint64
	in, out                  Regs
}

const (
	stateSize = 4096
	stubsOff  = 4096
	stubsSize = 4096
	// CodeOff is where a test's own bytes may start.
	CodeOff = stubsOff + stubsSize
)

// Mapping is the read-write-execute mapping where tests place and run code.
type Mapping struct {
	mem    []byte
	st     *state
	launch uint64
	exit   uint64
}

// New maps size bytes (at least 16 KiB) and writes the stubs.
func New(size int) (*Mapping, error) {
	if size < 4*4096 {
		return nil, fmt.Errorf("a machine of %d bytes is too small", size)
	}
	mem, err := kernel.MapExecutable(size)
	if err != nil {
		return nil, err
	}
	m := &Mapping{mem: mem, st: (*state)(unsafe.Pointer(&mem[0]))}
	m.writeStubs()
	return m, nil
}

// Close unmaps the machine.
func (m *Mapping) Close() error { return kernel.Unmap(m.mem) }

// Base returns the address of the mapping.
func (m *Mapping) Base() uint64 { return uint64(uintptr(unsafe.Pointer(&m.mem[0]))) }

// Mem returns the mapping.
func (m *Mapping) Mem() []byte { return m.mem }

// Exit returns the address test code jumps to when it is done.
func (m *Mapping) Exit() uint64 { return m.exit }

// Offsets of state's fields, for the stubs.
var (
	offSP    = int(unsafe.Offsetof(state{}.goSP))
	offBP    = int(unsafe.Offsetof(state{}.goBP))
	offR14   = int(unsafe.Offsetof(state{}.goR14))
	offR15   = int(unsafe.Offsetof(state{}.goR15))
	offEntry = int(unsafe.Offsetof(state{}.entry))
	offIn    = int(unsafe.Offsetof(state{}.in))
	offOut   = int(unsafe.Offsetof(state{}.out))
	offFlags = int(unsafe.Offsetof(Regs{}.RFLAGS))
)

// stub emits code with RIP-relative references to the state page.
type stub struct {
	code []byte
	at   uint64 // address of code[0]
	base uint64 // address of the state page
}

// ripMov emits "mov field(%rip), reg" (load) or "mov reg, field(%rip)".
func (s *stub) ripMov(load bool, reg int, field int) {
	rex := byte(0x48)
	if reg >= 8 {
		rex |= 4
	}
	op := byte(0x89)
	if load {
		op = 0x8b
	}
	s.code = append(s.code, rex, op, byte(reg&7)<<3|5)
	end := s.at + uint64(len(s.code)) + 4
	s.code = binary.LittleEndian.AppendUint32(s.code, uint32(int32(int64(s.base+uint64(field))-int64(end))))
}

func (m *Mapping) writeStubs() {
	base := m.Base()
	// launch: flags, every register but rsp, rsp, jump to the entry.
	l := &stub{at: base + stubsOff, base: base}
	l.ripMov(true, RAX, offIn+offFlags)
	l.code = append(l.code, 0x50, 0x9d) // push %rax; popfq
	for r := 0; r < 16; r++ {
		if r != RSP {
			l.ripMov(true, r, offIn+8*r)
		}
	}
	l.ripMov(true, RSP, offIn+8*RSP)
	l.code = append(l.code, 0xff, 0x25) // jmp *entry(%rip)
	end := l.at + uint64(len(l.code)) + 4
	l.code = binary.LittleEndian.AppendUint32(l.code, uint32(int32(int64(base+uint64(offEntry))-int64(end))))
	copy(m.mem[stubsOff:], l.code)
	m.launch = l.at
	// exit: every register, flags (through the test's stack), Go's
	// registers back, and return from enter.
	e := &stub{at: base + stubsOff + 2048, base: base}
	for r := 0; r < 16; r++ {
		e.ripMov(false, r, offOut+8*r)
	}
	e.code = append(e.code, 0x9c, 0x58) // pushfq; pop %rax
	e.ripMov(false, RAX, offOut+offFlags)
	e.ripMov(true, RSP, offSP)
	e.ripMov(true, RBP, offBP)
	e.ripMov(true, 14, offR14)
	e.ripMov(true, 15, offR15)
	e.code = append(e.code, 0xc3) // ret
	copy(m.mem[stubsOff+2048:], e.code)
	m.exit = e.at
}

// FlagsMask are the RFLAGS bits a test may set and compares: the
// arithmetic flags.
const FlagsMask = 0x8d5

// Run runs the code at entry with in, until it jumps to Exit, and returns
// the registers then. in.RFLAGS is masked to the arithmetic flags (DF
// stays clear, as Go requires); in.GPR[RSP] must point into the mapping.
func (m *Mapping) Run(entry uint64, in Regs) Regs {
	in.RFLAGS = in.RFLAGS&FlagsMask | 0x202 // reserved bit 1, IF
	m.st.in, m.st.entry = in, entry
	runtime.LockOSThread()
	enter(uintptr(m.launch), uintptr(unsafe.Pointer(m.st)))
	runtime.UnlockOSThread()
	return m.st.out
}

// enter saves Go's stack pointer, frame pointer, g (R14) and R15 in st and
// jumps to launch; the exit stub restores them and returns for it.
func enter(launch, st uintptr)
