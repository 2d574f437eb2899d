package callgraph

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz/lzma"
)

// compression is one format a bzImage payload may be in.
type compression struct {
	name   string
	magic  []byte
	decode func(payload []byte, sizeHint int) ([]byte, error) // nil: recognised, not supported
}

// compressions lists the formats of CONFIG_KERNEL_{GZIP,BZIP2,LZMA,XZ,LZO,
// LZ4,ZSTD} with the magic numbers scripts/extract-vmlinux looks for.
var compressions = []compression{
	{"gzip", []byte{0x1f, 0x8b, 0x08}, decodeGzip},
	{"xz", xzMagic, decodeXZ},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, decodeZstd},
	{"bzip2", []byte("BZh"), decodeBzip2},
	{"lzma", []byte{0x5d, 0x00, 0x00}, decodeLZMA},
	{"lzo", []byte{0x89, 'L', 'Z', 'O'}, nil},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}, nil},
}

var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// VmlinuxFromImage returns the ELF vmlinux in data: data itself when it is
// an ELF file already, else the decompressed payload of a bzImage. The
// payload is found from the boot protocol header (payload_offset and
// payload_length, protocol 2.08, Linux 2.6.26) or, failing that, by
// scanning for a compressed stream whose output is an ELF file, as
// scripts/extract-vmlinux does.
func VmlinuxFromImage(data []byte) ([]byte, error) {
	if bytes.HasPrefix(data, elfMagic) {
		return data, nil
	}
	if payload, ok := bzImagePayload(data); ok {
		out, err := decompressPayload(payload)
		if err == nil || !errors.Is(err, errNoStream) {
			return out, err
		}
	}
	return scanForELF(data)
}

// bzImagePayload returns the compressed payload named by the boot header.
func bzImagePayload(data []byte) ([]byte, bool) {
	if len(data) < 0x250 || string(data[0x202:0x206]) != "HdrS" || binary.LittleEndian.Uint16(data[0x206:]) < 0x208 {
		return nil, false
	}
	setupSects := int(data[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(data[0x248:]))
	length := int(binary.LittleEndian.Uint32(data[0x24c:]))
	if start < 0 || length <= 0 || start+length > len(data) {
		return nil, false
	}
	return data[start : start+length], true
}

var errNoStream = errors.New("no compressed stream")

// decompressPayload decompresses a payload that starts with a known magic
// number and checks that the result is an ELF file.
func decompressPayload(payload []byte) ([]byte, error) {
	for _, c := range compressions {
		if !bytes.HasPrefix(payload, c.magic) {
			continue
		}
		if c.decode == nil {
			return nil, fmt.Errorf("the vmlinuz is %s-compressed, which autoprof cannot decompress (gzip, xz, zstd, bzip2 and lzma can be)", c.name)
		}
		out, err := c.decode(payload, sizeHint(payload))
		if err != nil {
			return nil, fmt.Errorf("decompressing the %s payload: %w", c.name, err)
		}
		if !bytes.HasPrefix(out, elfMagic) {
			return nil, fmt.Errorf("the %s payload does not decompress to an ELF file", c.name)
		}
		return out, nil
	}
	return nil, errNoStream
}

// sizeHint reads the decompressed size the kernel build appends to the
// compressed stream (size_append in scripts/Makefile.lib), for
// preallocation only.
func sizeHint(payload []byte) int {
	if len(payload) < 8 {
		return 0
	}
	n := int(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	if n < len(payload) || n > 64*len(payload) {
		return 0
	}
	return n
}

// scanForELF tries every occurrence of every magic number.
func scanForELF(data []byte) ([]byte, error) {
	for _, c := range compressions {
		if c.decode == nil {
			continue
		}
		for i := bytes.Index(data, c.magic); i >= 0; {
			if out, err := decompressPayload(data[i:]); err == nil {
				return out, nil
			}
			next := bytes.Index(data[i+1:], c.magic)
			if next < 0 {
				break
			}
			i += 1 + next
		}
	}
	return nil, errors.New("not a vmlinux ELF file, and no compressed kernel inside it (is it a bzImage?)")
}

func decodeGzip(payload []byte, sizeHint int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	return readAll(zr, sizeHint)
}

func decodeZstd(payload []byte, sizeHint int) ([]byte, error) {
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxDictCap), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	// A decoder of whole streams rejects the 4-byte size that follows the
	// frame, so drop it where it is there.
	if sizeHint > 0 {
		if out, err := zr.DecodeAll(payload[:len(payload)-4], make([]byte, 0, sizeHint)); err == nil {
			return out, nil
		}
	}
	return zr.DecodeAll(payload, nil)
}

func decodeBzip2(payload []byte, sizeHint int) ([]byte, error) {
	return readAll(bzip2.NewReader(bytes.NewReader(payload)), sizeHint)
}

func decodeLZMA(payload []byte, sizeHint int) ([]byte, error) {
	if len(payload) < 13 {
		return nil, io.ErrUnexpectedEOF
	}
	if dict := binary.LittleEndian.Uint32(payload[1:]); dict > maxDictCap {
		return nil, fmt.Errorf("lzma dictionary of %d bytes is over the %d autoprof allows", dict, maxDictCap)
	}
	zr, err := lzma.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	return readAll(zr, sizeHint)
}

// maxVmlinux bounds a decompressed kernel (Debian's are about 60 MB).
const maxVmlinux = 1 << 30

// readAll reads a decompressor's output, up to maxVmlinux bytes.
func readAll(r io.Reader, sizeHint int) ([]byte, error) {
	out := bytes.NewBuffer(make([]byte, 0, sizeHint))
	n, err := io.Copy(out, io.LimitReader(r, maxVmlinux+1))
	if err != nil {
		return nil, err
	}
	if n > maxVmlinux {
		return nil, fmt.Errorf("decompresses to more than %d bytes", maxVmlinux)
	}
	return out.Bytes(), nil
}
