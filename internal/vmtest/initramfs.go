package vmtest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Initramfs is a guest root file system, written as an uncompressed newc
// cpio archive (the kernel unpacks it into its rootfs at boot). Files are
// read from the host only when the archive is written.
type Initramfs struct {
	files map[string]initramfsFile // by guest path
}

type initramfsFile struct {
	host string // read from here, or
	data []byte // this
	mode fs.FileMode
}

// NewInitramfs returns an empty root file system.
func NewInitramfs() *Initramfs { return &Initramfs{files: map[string]initramfsFile{}} }

// AddFile adds the host file at host as guestPath, keeping its permissions.
func (r *Initramfs) AddFile(guestPath, host string) error {
	st, err := os.Stat(host)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("adding %s to the initramfs: not a regular file", host)
	}
	r.files[clean(guestPath)] = initramfsFile{host: host, mode: st.Mode().Perm()}
	return nil
}

// AddBytes adds data as guestPath with the given permissions.
func (r *Initramfs) AddBytes(guestPath string, data []byte, perm fs.FileMode) {
	r.files[clean(guestPath)] = initramfsFile{data: data, mode: perm}
}

// AddTree adds every regular file under the host directory dir below
// guestDir.
func (r *Initramfs) AddTree(guestDir, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		return r.AddFile(path.Join(guestDir, filepath.ToSlash(rel)), p)
	})
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// WriteTo writes the archive: every parent directory before its files, in
// a stable order.
func (r *Initramfs) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	aw := cpio.NewWriter(cw)
	names := make([]string, 0, len(r.files))
	dirs := map[string]bool{}
	for name := range r.files {
		names = append(names, name)
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names) // a parent sorts before its children
	for i, name := range names {
		if err := r.writeEntry(aw, name, int64(i+1), dirs[name]); err != nil {
			return cw.n, fmt.Errorf("writing %s to the initramfs: %w", name, err)
		}
	}
	if err := aw.Close(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

func (r *Initramfs) writeEntry(aw *cpio.Writer, name string, inode int64, isDir bool) error {
	if isDir {
		return aw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeDir | 0o755, Inode: inode, Links: 2})
	}
	f := r.files[name]
	data := f.data
	if f.host != "" {
		var err error
		if data, err = os.ReadFile(f.host); err != nil {
			return err
		}
	}
	hdr := &cpio.Header{Name: name, Mode: cpio.TypeReg | cpio.FileMode(f.mode), Size: int64(len(data)), Inode: inode, Links: 1}
	if err := aw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := aw.Write(data)
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
