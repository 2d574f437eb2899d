package debuginfo

import (
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Search says where debug information is looked for.
type Search struct {
	// BuildIDDirs hold the debuginfo layout: DIR/.build-id/ab/cdef….debug
	// for build ID abcdef… (Debian's -dbg packages and Fedora's debuginfo
	// fill /usr/lib/debug so), or DIR is itself such a .build-id directory.
	BuildIDDirs []string
	// Dirs are walked for ELF files (vmlinux*, *.ko, *.debug) whose build
	// ID is the one looked for: a module's build directory, a kernel
	// build tree.
	Dirs []string
	// Files are checked as they are (/usr/lib/debug/boot/vmlinux-RELEASE).
	Files []string
}

// DefaultSearch is where distributions install the kernel's debug
// information for release (uname -r), and dirs the user named.
func DefaultSearch(release string, dirs []string) Search {
	return Search{
		BuildIDDirs: []string{"/usr/lib/debug"},
		Dirs:        dirs,
		Files:       []string{"/usr/lib/debug/boot/vmlinux-" + release, "/usr/lib/debug/lib/modules/" + release + "/vmlinux"},
	}
}

// ErrNotFound is returned by Find where no file has the build ID.
var ErrNotFound = errors.New("no debug information with this build ID")

// Find returns the ELF file that s holds for the GNU build ID id (hex).
func (s Search) Find(id string) (string, error) {
	if len(id) < 3 {
		return "", fmt.Errorf("build ID %q: too short", id)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", fmt.Errorf("build ID %q: %w", id, err)
	}
	for _, d := range s.BuildIDDirs {
		for _, p := range []string{
			filepath.Join(d, ".build-id", id[:2], id[2:]+".debug"),
			filepath.Join(d, id[:2], id[2:]+".debug"),
		} {
			if hasBuildID(p, id) {
				return p, nil
			}
		}
	}
	for _, p := range s.Files {
		if hasBuildID(p, id) {
			return p, nil
		}
	}
	for _, d := range s.Dirs {
		if p := walkFor(d, id); p != "" {
			return p, nil
		}
	}
	return "", fmt.Errorf("build ID %s: %w", id, ErrNotFound)
}

// walkFor returns the first ELF file under dir, by name a kernel's or a
// module's, whose build ID is id; "" where none is.
func walkFor(dir, id string) string {
	found := ""
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !e.Type().IsRegular() {
			return nil // an unreadable entry is no match
		}
		n := e.Name()
		if !strings.HasPrefix(n, "vmlinux") && !strings.HasSuffix(n, ".ko") && !strings.HasSuffix(n, ".debug") {
			return nil
		}
		if hasBuildID(p, id) {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

// hasBuildID reports whether path is an ELF file with GNU build ID id.
func hasBuildID(path, id string) bool {
	got, err := elfBuildID(path)
	return err == nil && got == id
}

// elfBuildID reads the GNU build ID of the ELF file at path, in hex.
func elfBuildID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", err
	}
	for _, s := range ef.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		if id, err := ParseBuildID(s.Open()); err == nil {
			return hex.EncodeToString(id), nil
		}
	}
	return "", errors.New("no GNU build ID note")
}
