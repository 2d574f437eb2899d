package splicer

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
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

// NotesPath is where the kernel shows its own ELF notes.
const NotesPath = "/sys/kernel/notes"

// RunningIdentity measures the running kernel: uname -r and the build id
// in /sys/kernel/notes.
func RunningIdentity() (Identity, error) {
	rel, err := kernel.Release()
	if err != nil {
		return Identity{}, err
	}
	f, err := os.Open(NotesPath)
	if err != nil {
		return Identity{}, fmt.Errorf("reading the kernel's build id: %w", err)
	}
	defer f.Close()
	id, err := ParseBuildID(f)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", NotesPath, err)
	}
	return Identity{Release: rel, BuildID: id}, nil
}

// ParseBuildID finds the GNU build id (note type 3, name "GNU") among the
// ELF notes in r.
func ParseBuildID(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	for len(b) >= 12 {
		namesz := binary.LittleEndian.Uint32(b)
		descsz := binary.LittleEndian.Uint32(b[4:])
		typ := binary.LittleEndian.Uint32(b[8:])
		nameEnd := 12 + align4(uint64(namesz))
		descEnd := nameEnd + align4(uint64(descsz))
		if descEnd > uint64(len(b)) {
			break
		}
		name := bytes.TrimRight(b[12:12+namesz], "\x00")
		if typ == 3 && string(name) == "GNU" && descsz > 0 {
			return append([]byte(nil), b[nameEnd:nameEnd+uint64(descsz)]...), nil
		}
		b = b[descEnd:]
	}
	return nil, errors.New("no GNU build id note")
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// Params are the module's parameters: the kernel's identity and the
// addresses of the unexported internals it uses, each of which the module
// checks against kallsyms before it trusts it.
type Params struct {
	Identity
	TextPoke, TextMutex, BuildIDAddr, SearchExtable uint64
	Stext, Etext                                    uint64
	// Sizes of the module's tables (0: the module's defaults).
	MaxInsts, MaxCtxs, MaxThreads int
}

// internals are the symbols the module needs, by parameter.
var internals = []struct {
	param, symbol string
	field         func(*Params) *uint64
}{
	{"text_poke", "text_poke", func(p *Params) *uint64 { return &p.TextPoke }},
	{"text_mutex", "text_mutex", func(p *Params) *uint64 { return &p.TextMutex }},
	{"vmlinux_build_id", "vmlinux_build_id", func(p *Params) *uint64 { return &p.BuildIDAddr }},
	{"search_exception_tables", "search_exception_tables", func(p *Params) *uint64 { return &p.SearchExtable }},
}

// NewParams resolves the module's parameters from the kernel's symbols.
func NewParams(id Identity, syms *callgraph.Symbols) (Params, error) {
	p := Params{Identity: id}
	if len(id.BuildID) != 20 {
		return p, fmt.Errorf("build id of %d bytes: the module checks 20-byte (SHA-1) ids", len(id.BuildID))
	}
	for _, in := range internals {
		s, ok := syms.Symbol(in.symbol)
		if !ok || s.Addr == 0 {
			return p, fmt.Errorf("the kernel has no symbol %s, which the splice module needs", in.symbol)
		}
		*in.field(&p) = s.Addr
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
	for _, in := range internals {
		args = append(args, fmt.Sprintf("%s=%d", in.param, *in.field(&p)))
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
