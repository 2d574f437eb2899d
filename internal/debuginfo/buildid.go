package debuginfo

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KernelNotes is where the kernel shows its own ELF notes.
const KernelNotes = "/sys/kernel/notes"

// moduleNotes is where the kernel shows a module's ELF notes.
func moduleNotes(module string) string {
	return filepath.Join("/sys/module", module, "notes", ".note.gnu.build-id")
}

// ParseBuildID finds the GNU build ID (note type NT_GNU_BUILD_ID, name
// "GNU") among the ELF notes in r: each a header of namesz, descsz and
// type, then the name and the descriptor, each padded to 4 bytes.
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
		if typ == ntGNUBuildID && string(name) == "GNU" && descsz > 0 {
			return append([]byte(nil), b[nameEnd:nameEnd+uint64(descsz)]...), nil
		}
		b = b[descEnd:]
	}
	return nil, errors.New("no GNU build ID note")
}

// ntGNUBuildID is the type of the GNU build ID note (elf.h NT_GNU_BUILD_ID).
const ntGNUBuildID = 3

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// KernelBuildID returns the running kernel's build ID, in hex.
func KernelBuildID() (string, error) { return fileBuildID(KernelNotes) }

// ModuleBuildID returns a loaded module's build ID, in hex.
func ModuleBuildID(module string) (string, error) { return fileBuildID(moduleNotes(module)) }

func fileBuildID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	id, err := ParseBuildID(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(id), nil
}
