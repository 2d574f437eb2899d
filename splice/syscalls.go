package splice

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
)

// SyscallTable maps x86-64 syscall numbers to the functions that serve
// them (__x64_sys_read for 0), as the running kernel's sys_call_table
// says: read through the live text reader and symbolized, so that no
// kernel's table is hard-coded.
type SyscallTable struct {
	byName map[string]int
	byNr   map[int]string
}

// maxSyscalls bounds the table read (x86-64 numbers stay below 1024).
const maxSyscalls = 1024

// ReadSyscallTable reads the running kernel's syscall table: from
// sys_call_table where the symbol table lists it, else from the compare
// tree of x64_sys_call (kernels since 6.9; see syscallsFromDispatch).
func ReadSyscallTable(syms *callgraph.Symbols, text callgraph.Text) (*SyscallTable, error) {
	sym, ok := syms.Symbol("sys_call_table")
	if !ok || sym.Addr == 0 {
		t, err := readDispatch(syms, text)
		if err != nil {
			return nil, fmt.Errorf("reading the syscall table: no sys_call_table symbol (the kernel's kallsyms lists no data without CONFIG_KALLSYMS_ALL), and %w", err)
		}
		return t, nil
	}
	return readTable(sym, syms, text)
}

// readDispatch decodes x64_sys_call from live text.
func readDispatch(syms *callgraph.Symbols, text callgraph.Text) (*SyscallTable, error) {
	sym, err := syms.Func("x64_sys_call")
	if err != nil {
		return nil, fmt.Errorf("no x64_sys_call to decode (kernels before 6.9): %w", err)
	}
	code := make([]byte, sym.Size)
	if err := text.ReadAt(code, sym.Addr); err != nil {
		return nil, fmt.Errorf("reading x64_sys_call: %w", err)
	}
	fn, err := callgraph.Decode(sym, code, syms)
	if err != nil {
		return nil, fmt.Errorf("decoding x64_sys_call: %w", err)
	}
	return syscallsFromDispatch(fn)
}

// readTable reads sys_call_table from kernel memory. Entries run until the
// first that is not the start of a function; each is named by its
// __x64_sys_* alias (holes hold __x64_sys_ni_syscall).
func readTable(sym callgraph.Symbol, syms *callgraph.Symbols, text callgraph.Text) (*SyscallTable, error) {
	buf := make([]byte, 8*maxSyscalls)
	n := len(buf)
	for ; n >= 8; n /= 2 {
		if text.ReadAt(buf[:n], sym.Addr) == nil {
			break
		}
	}
	if n < 8 {
		return nil, fmt.Errorf("reading the syscall table at %#x: unreadable", sym.Addr)
	}
	return parseSyscallTable(buf[:n], syms)
}

func parseSyscallTable(b []byte, syms *callgraph.Symbols) (*SyscallTable, error) {
	t := &SyscallTable{byName: map[string]int{}, byNr: map[int]string{}}
	for nr := 0; 8*nr+8 <= len(b); nr++ {
		addr := binary.LittleEndian.Uint64(b[8*nr:])
		if _, off, err := syms.FuncAt(addr); err != nil || off != 0 {
			break // past the table's end
		}
		name := ""
		for _, a := range syms.Aliases(addr) {
			if _, native, ok := instrument.Syscall(a.Name); ok && instrument.IsSyscall64(a.Name) && (name == "" || native) {
				name = a.Name
			}
		}
		if name == "" {
			continue // a hole (sys_ni_syscall under another name)
		}
		t.byNr[nr] = name
		if _, dup := t.byName[name]; !dup {
			t.byName[name] = nr
		}
	}
	if len(t.byNr) == 0 {
		return nil, fmt.Errorf("reading the syscall table: its first entry is not a __x64_sys_* function")
	}
	return t, nil
}

// NewSyscallTable makes a table from known numbers: for tests, and for
// kernels whose symbol table lacks sys_call_table (no
// CONFIG_KALLSYMS_ALL), given numbers from elsewhere.
func NewSyscallTable(byName map[string]int) *SyscallTable {
	t := &SyscallTable{byName: map[string]int{}, byNr: map[int]string{}}
	for name, nr := range byName {
		t.byName[name], t.byNr[nr] = nr, name
	}
	return t
}

// Number returns the syscall number of a function ("__x64_sys_read"). The
// placeholder __x64_sys_ni_syscall has none. Where the kernel serves a
// syscall with its __ia32_sys_ function (argument-less syscalls on some
// kernels), the __x64_sys_ name finds it too, and the other way round.
func (t *SyscallTable) Number(fn string) (int, bool) {
	if strings.HasSuffix(fn, "_sys_ni_syscall") {
		return 0, false
	}
	if nr, ok := t.byName[fn]; ok {
		return nr, true
	}
	name, _, ok := instrument.Syscall(fn)
	if !ok || !instrument.IsSyscall64(fn) {
		return 0, false
	}
	for _, entry := range instrument.Syscall64Entries(name) {
		if nr, ok := t.byName[entry]; ok {
			return nr, true
		}
	}
	return 0, false
}

// Name returns the function serving syscall nr.
func (t *SyscallTable) Name(nr int) (string, bool) {
	n, ok := t.byNr[nr]
	return n, ok
}

// Len returns the number of entries read.
func (t *SyscallTable) Len() int { return len(t.byNr) }
