//go:build !vm

package callgraph

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz/lzma"
)

// tinyELF returns a small x86-64 ELF file holding code at 0xffffffff81000000.
func tinyELF(t *testing.T, code []byte) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := writeObjdumpELF(path, []region{{addr: fxText, code: code, funcs: []Symbol{{Name: "f", Addr: fxText, Size: uint64(len(code))}}}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bzImage wraps a payload in a minimal boot header (protocol 2.15) and
// appends the decompressed size, as the kernel build does.
func bzImage(payload []byte, size int) []byte {
	const setupSects = 1
	img := make([]byte, (setupSects+1)*512)
	img[0x1f1] = setupSects
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	payload = binary.LittleEndian.AppendUint32(bytes.Clone(payload), uint32(size))
	binary.LittleEndian.PutUint32(img[0x248:], 0x10)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	img = append(img, make([]byte, 0x10)...)
	return append(append(img, payload...), "trailing"...)
}

func compressWith(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch format {
	case "gzip":
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "zstd":
		w, _ := zstd.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "lzma":
		w, err := lzma.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case "xz": // with the x86 BCJ filter, as the kernel does; needs xz(1)
		if _, err := exec.LookPath("xz"); err != nil {
			t.Skip("xz is not installed")
		}
		cmd := exec.Command("xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c")
		cmd.Stdin = bytes.NewReader(data)
		cmd.Stdout = &b
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// callHeavyCode is x86 code full of calls and jumps, which the BCJ filter
// rewrites.
func callHeavyCode() []byte {
	var code []byte
	for i := 0; i < 5000; i++ {
		code = append(code, 0xe8)
		code = binary.LittleEndian.AppendUint32(code, uint32(i*37-5000))
		code = append(code, 0x48, 0x89, 0xc7, 0xe9, byte(i), 0, 0, 0, 0x90)
	}
	return code
}

func TestOpenImageFormats(t *testing.T) {
	code := callHeavyCode()
	elfFile := tinyELF(t, code)
	for _, format := range []string{"gzip", "zstd", "lzma", "xz", "elf", "scan"} {
		t.Run(format, func(t *testing.T) {
			var img []byte
			switch format {
			case "elf":
				img = elfFile
			case "scan": // no boot header: found by its magic number
				img = append([]byte("some setup code\x1f\x8b"), compressWith(t, "gzip", elfFile)...)
			default:
				img = bzImage(compressWith(t, format, elfFile), len(elfFile))
			}
			path := filepath.Join(t.TempDir(), "vmlinuz")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			im, err := OpenImage(path)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(code))
			if err := im.ReadAt(got, fxText); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, code) {
				t.Fatal("the decompressed text differs from the original")
			}
			if err := im.ReadAt(got[:16], fxText+uint64(len(code))-8); err == nil || !strings.Contains(err.Error(), "outside the sections") {
				t.Errorf("read past .text: %v", err)
			}
		})
	}
}

func TestOpenImageErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lz4 := write("lz4", bzImage([]byte{0x02, 0x21, 0x4c, 0x18, 1, 2, 3}, 100))
	junk := write("junk", []byte("this is not a kernel"))
	corrupt := write("corrupt", bzImage(append([]byte{0x1f, 0x8b, 0x08}, make([]byte, 20)...), 100))
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "reading the kernel image: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{lz4, "kernel image " + lz4 + ": the vmlinuz is lz4-compressed, which autoprof cannot decompress (gzip, xz, zstd, bzip2 and lzma can be)"},
		{junk, "kernel image " + junk + ": not a vmlinux ELF file, and no compressed kernel inside it (is it a bzImage?)"},
		{corrupt, "kernel image " + corrupt + ": decompressing the gzip payload: "},
	} {
		_, err := OpenImage(c.path)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("OpenImage(%s): %v\nwant %s", filepath.Base(c.path), err, c.want)
		}
	}
}

// TestXZTruncated checks that a damaged xz stream is an error, not a short
// kernel.
func TestXZTruncated(t *testing.T) {
	data := compressWith(t, "xz", callHeavyCode())
	// The last 30-odd bytes are the index and the footer, which the
	// decoder does not need; cut into the block and its check instead.
	for _, cut := range []int{len(data) / 2, len(data) - 48} {
		if _, err := decodeXZ(data[:cut], 0); err == nil {
			t.Errorf("xz stream cut at %d of %d bytes decoded", cut, len(data))
		}
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x40
	if _, err := decodeXZ(flipped, 0); err == nil {
		t.Error("xz stream with a flipped bit decoded")
	}
}

// TestDebianImages opens Debian's 6.1 and 6.12 kernels and checks their
// compiled-in symbol tables against the images' own structure.
func TestDebianImages(t *testing.T) {
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			_, im, syms := debian(t, series)
			text, data, _ := im.Section(".text")
			start, end, ok := syms.CoreText()
			if !ok || start != text || end > text+uint64(len(data)) {
				t.Errorf("core text [%#x, %#x), .text at %#x (%d bytes)", start, end, text, len(data))
			}
			if err := im.CheckSymbols(syms); err != nil {
				t.Errorf("the image's own symbols fail CheckSymbols: %v", err)
			}
			if n := len(syms.Functions()); n < 30000 {
				t.Errorf("%d functions", n)
			}
			if im.BuildID() == "" {
				t.Error("no build ID")
			}
			f, err := NewGraph(syms, im, false).Function("vfs_read")
			if err != nil {
				t.Fatal(err)
			}
			if f.Fentry < 0 || len(f.Problems) > 0 {
				t.Errorf("vfs_read: Fentry %d, problems %v", f.Fentry, f.Problems)
			}
		})
	}
}

// systemMap writes a symbol table as a System.map.
func systemMap(t *testing.T, syms *Symbols) string {
	t.Helper()
	var b strings.Builder
	for _, s := range syms.all {
		fmt.Fprintf(&b, "%016x %c %s\n", s.Addr, s.Type, s.Name)
	}
	path := filepath.Join(t.TempDir(), "System.map")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSystemMapCheck gives Debian's 6.1 image its own symbols as a
// System.map, and 6.12's: only the first passes.
func TestSystemMapCheck(t *testing.T) {
	k61, im61, syms61 := debian(t, "6.1")
	k612, _, syms612 := debian(t, "6.12")
	parse := func(path string) *Symbols {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		syms, err := ParseSystemMap(f)
		if err != nil {
			t.Fatal(err)
		}
		return syms
	}
	if err := im61.CheckSymbols(parse(systemMap(t, syms61))); err != nil {
		t.Errorf("the image's own symbols as a System.map: %v", err)
	}
	err := im61.CheckSymbols(parse(systemMap(t, syms612)))
	if !errors.Is(err, ErrSymbolsMismatch) || strings.Contains(err.Error(), "\n") {
		t.Errorf("6.12's System.map with 6.1's image: %v", err)
	}
	t.Logf("wrong System.map: %v", err)
	// End to end, with a System.map that fits.
	g, err := OpenOffline(k612.Vmlinuz, systemMap(t, syms612))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Function("vfs_read"); err != nil {
		t.Error(err)
	}
	// And with the placeholder Debian packages (which fails before the
	// image is decompressed).
	_, _, err = OpenOfflineText(k61.Vmlinuz, k61.SystemMap)
	if !errors.Is(err, ErrPlaceholderSystemMap) {
		t.Errorf("Debian's packaged System.map: %v", err)
	}
}

func TestCheckSymbolsFixture(t *testing.T) {
	im := &Image{path: "vmlinux", secs: []imageSection{
		{".text", fxText, 0x200, make([]byte, 0x200)},
		{".rodata", fxRodata, 0x100, append([]byte("Linux version 6.99"), make([]byte, 0xee)...)},
	}}
	im.symsOnce.Do(func() { im.symsErr = errors.New("no tables") })
	for _, c := range []struct{ syms, want string }{
		{"ffffffff81000000 T _stext\nffffffff81000010 T f\nffffffff82000000 D linux_banner\n", ""},
		{"ffffffff81000100 T _stext\nffffffff81000110 T f\n", "the symbol table does not belong to this kernel image: _stext is 0xffffffff81000100 there, but .text starts at 0xffffffff81000000 in the image"},
		{"ffffffff81000000 T _stext\nffffffff82000004 D linux_banner\n", `the symbol table does not belong to this kernel image: linux_banner (0xffffffff82000004) does not point at "Linux version" in the image`},
		{"ffffffff81000010 T f\n", "the symbol table does not belong to this kernel image: it has no _stext"},
	} {
		syms, err := ParseSystemMap(strings.NewReader(c.syms))
		if err != nil {
			t.Fatal(err)
		}
		err = im.CheckSymbols(syms)
		if got := fmt.Sprint(err); c.want == "" && err != nil || c.want != "" && got != c.want {
			t.Errorf("CheckSymbols: %v\nwant %s", err, c.want)
		}
	}
}

func TestCompareSymbols(t *testing.T) {
	own := "ffffffff81000000 T _stext\nffffffff81000010 T f\nffffffff81000020 T g\nffffffff81000030 t dup\nffffffff81000040 t dup\nffffffff81000050 T _etext\n"
	im := &Image{path: "vmlinux", secs: []imageSection{{".text", fxText, 0x100, make([]byte, 0x100)}}}
	im.symsOnce.Do(func() { im.syms, im.symsErr = ParseSystemMap(strings.NewReader(own)) })
	for _, c := range []struct{ syms, want string }{
		{own, ""},
		// Names that are not unique are not compared.
		{"ffffffff81000000 T _stext\nffffffff81000010 T f\nffffffff81000018 t dup\nffffffff81000050 T _etext\n", ""},
		{"ffffffff81000000 T _stext\nffffffff81000010 T f\nffffffff81000028 T g\nffffffff81000050 T _etext\n",
			"the symbol table does not belong to this kernel image: 1 of 2 functions are elsewhere (g is 0xffffffff81000028 there, 0xffffffff81000020 in the image)"},
	} {
		syms, err := ParseSystemMap(strings.NewReader(c.syms))
		if err != nil {
			t.Fatal(err)
		}
		err = im.CheckSymbols(syms)
		if got := fmt.Sprint(err); c.want == "" && err != nil || c.want != "" && got != c.want {
			t.Errorf("CheckSymbols: %v\nwant %s", err, c.want)
		}
	}
}
