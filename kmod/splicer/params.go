package splicer

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/debuginfo"
	"github.com/autoprof/autoprof/internal/kernel"
)

// Identity is what makes a kernel the one analysed: its release and the
// GNU build id of its vmlinux. The module refuses to load, and to splice,
// on any other kernel.
type Identity struct {
	Release string
	BuildID []byte
}

// String returns "release (build id HEX)".
func (id Identity) String() string {
	return fmt.Sprintf("%s (build id %x)", id.Release, id.BuildID)
}

// RunningIdentity measures the running kernel: uname -r and the build id
// in /sys/kernel/notes.
func RunningIdentity() (Identity, error) {
	rel, err := kernel.Release()
	if err != nil {
		return Identity{}, err
	}
	f, err := os.Open(debuginfo.KernelNotes)
	if err != nil {
		return Identity{}, fmt.Errorf("reading the kernel's build id: %w", err)
	}
	defer f.Close()
	id, err := debuginfo.ParseBuildID(f)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", debuginfo.KernelNotes, err)
	}
	return Identity{Release: rel, BuildID: id}, nil
}

// Params are the module's parameters: the kernel's identity and the
// addresses of the unexported internals it uses, each of which the module
// checks against kallsyms before it trusts it.
type Params struct {
	Identity
	// Addrs holds the internals' addresses, by parameter (see Internals).
	Addrs        map[string]uint64
	Stext, Etext uint64
	// Sizes of the module's tables (0: the module's defaults).
	MaxInsts, MaxCtxs, MaxThreads int
}

// Internal is a kernel symbol the module needs, and the parameter that
// passes its address.
type Internal struct {
	Param, Symbol string
	// Func marks a function. The module calls it through a static call
	// that it retargets at load: a direct call, never one through a
	// pointer, which a kernel with IBT faults where it sealed the
	// function's ENDBR (TestNoIndirectCalls).
	Func bool
}

// Internals are the kernel symbols the module needs: data it reads, and
// functions it calls.
var Internals = []Internal{
	{"text_mutex", "text_mutex", false},
	{"vmlinux_build_id", "vmlinux_build_id", false},
	{"start_ex_table", "__start___ex_table", false},
	{"stop_ex_table", "__stop___ex_table", false},
	{"start_jump_table", "__start___jump_table", false},
	{"stop_jump_table", "__stop___jump_table", false},
	{"x86_return_thunk", "x86_return_thunk", false},
	{"text_poke", "text_poke", true},
	{"insn_decode", "insn_decode", true},
	{"jump_label_text_reserved", "jump_label_text_reserved", true},
	{"static_call_text_reserved", "static_call_text_reserved", true},
	{"ftrace_text_reserved", "ftrace_text_reserved", true},
	{"alternatives_text_reserved", "alternatives_text_reserved", true},
	{"within_kprobe_blacklist", "within_kprobe_blacklist", true},
	{"get_kprobe", "get_kprobe", true},
}

// NewParams resolves the module's parameters from the kernel's symbols.
func NewParams(id Identity, syms *callgraph.Symbols) (Params, error) {
	p := Params{Identity: id, Addrs: map[string]uint64{}}
	if len(id.BuildID) != 20 {
		return p, fmt.Errorf("build id of %d bytes: the module checks 20-byte (SHA-1) ids", len(id.BuildID))
	}
	for _, in := range Internals {
		s, ok := syms.Symbol(in.Symbol)
		if !ok || s.Addr == 0 {
			return p, fmt.Errorf("the kernel has no symbol %s, which the splice module needs", in.Symbol)
		}
		p.Addrs[in.Param] = s.Addr
	}
	var ok bool
	p.Stext, p.Etext, ok = syms.CoreText()
	if !ok {
		return p, errors.New("the kernel's symbols have no _stext/_etext")
	}
	return p, nil
}

// String returns the parameters as finit_module takes them.
func (p Params) String() string {
	args := []string{
		"release=" + p.Release,
		"build_id=" + hex.EncodeToString(p.BuildID),
		fmt.Sprintf("stext=%d etext=%d", p.Stext, p.Etext),
	}
	for _, in := range Internals {
		args = append(args, fmt.Sprintf("%s=%d", in.Param, p.Addrs[in.Param]))
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max_insts", p.MaxInsts}, {"max_ctxs", p.MaxCtxs}, {"max_threads", p.MaxThreads}} {
		if n.v > 0 {
			args = append(args, fmt.Sprintf("%s=%d", n.name, n.v))
		}
	}
	return strings.Join(args, " ")
}
