package callgraph

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// The kernel compresses with "xz --check=crc32 --x86 --lzma2=,dict=32MiB"
// (scripts/xz_wrap.sh): an x86 BCJ filter before LZMA2, which
// github.com/ulikunitz/xz does not implement. decodeXZ therefore reads the
// .xz container itself (https://tukaani.org/xz/xz-file-format.txt), lets
// ulikunitz/xz/lzma decode each block's LZMA2 data, undoes the BCJ filter,
// and checks each block's CRC32, which covers the final bytes and so checks
// the BCJ step too.

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

const (
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
)

// decodeXZ decompresses an .xz stream, ignoring whatever follows its last
// block (the index, the footer, and the size the kernel build appends).
func decodeXZ(data []byte, sizeHint int) ([]byte, error) {
	if len(data) < 12 || !bytes.Equal(data[:6], xzMagic) {
		return nil, errors.New("xz: no stream header")
	}
	if crc32.ChecksumIEEE(data[6:8]) != binary.LittleEndian.Uint32(data[8:12]) {
		return nil, errors.New("xz: stream header CRC mismatch")
	}
	checkSize := map[byte]int{0: 0, 1: 4, 4: 8, 10: 32}[data[7]&0x0f]
	if data[7]&0x0f != 0 && checkSize == 0 {
		return nil, fmt.Errorf("xz: unknown check type %d", data[7]&0x0f)
	}
	out := make([]byte, 0, sizeHint)
	pos := 12
	for pos < len(data) && data[pos] != 0 {
		block, next, err := decodeXZBlock(data, pos, checkSize, data[7]&0x0f == 1)
		if err != nil {
			return nil, fmt.Errorf("xz block at %d: %w", pos, err)
		}
		out = append(out, block...)
		pos = next
	}
	if len(out) == 0 {
		return nil, errors.New("xz: no blocks")
	}
	return out, nil
}

// xzBlockHeader is what decodeXZBlock needs from a block header.
type xzBlockHeader struct {
	dictCap  int
	x86      bool
	x86Start uint32
}

// decodeXZBlock decodes the block at pos and returns its bytes and the
// position of what follows it.
func decodeXZBlock(data []byte, pos, checkSize int, crc bool) ([]byte, int, error) {
	hsize := (int(data[pos]) + 1) * 4
	if pos+hsize > len(data) {
		return nil, 0, io.ErrUnexpectedEOF
	}
	h, err := parseXZBlockHeader(data[pos : pos+hsize])
	if err != nil {
		return nil, 0, err
	}
	src := bytes.NewReader(data[pos+hsize:])
	r, err := lzma.Reader2Config{DictCap: h.dictCap}.NewReader2(src)
	if err != nil {
		return nil, 0, fmt.Errorf("lzma2: %w", err)
	}
	out, err := readAll(r, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("lzma2: %w", err)
	}
	if h.x86 {
		bcjX86Decode(out, h.x86Start)
	}
	// The reader reads byte by byte from a bytes.Reader, so it stops at the
	// end of the LZMA2 data; padding to a multiple of 4 follows, then the
	// check.
	end := pos + hsize + int(src.Size()) - src.Len()
	end += (4 - (end-pos)%4) % 4
	if end+checkSize > len(data) {
		return nil, 0, io.ErrUnexpectedEOF
	}
	if crc && crc32.ChecksumIEEE(out) != binary.LittleEndian.Uint32(data[end:]) {
		return nil, 0, errors.New("CRC32 of the decompressed data does not match")
	}
	return out, end + checkSize, nil
}

func parseXZBlockHeader(h []byte) (xzBlockHeader, error) {
	var bh xzBlockHeader
	n := len(h)
	if crc32.ChecksumIEEE(h[:n-4]) != binary.LittleEndian.Uint32(h[n-4:]) {
		return bh, errors.New("block header CRC mismatch")
	}
	flags := h[1]
	p := 2
	var err error
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, p, err = xzVLI(h, p); err != nil {
				return bh, err
			}
		}
	}
	nfilters := int(flags&3) + 1
	for f := 0; f < nfilters; f++ {
		var id, psize uint64
		if id, p, err = xzVLI(h, p); err != nil {
			return bh, err
		}
		if psize, p, err = xzVLI(h, p); err != nil {
			return bh, err
		}
		if p+int(psize) > n-4 {
			return bh, errors.New("filter properties past the header")
		}
		props := h[p : p+int(psize)]
		p += int(psize)
		switch {
		case id == xzFilterX86 && f < nfilters-1 && (psize == 0 || psize == 4):
			bh.x86 = true
			if psize == 4 {
				bh.x86Start = binary.LittleEndian.Uint32(props)
			}
		case id == xzFilterLZMA2 && f == nfilters-1 && psize == 1 && props[0] <= 40:
			if bh.dictCap, err = lzma2DictCap(props[0]); err != nil {
				return bh, err
			}
		default:
			return bh, fmt.Errorf("filter %#x (position %d of %d) not supported; want x86 BCJ then LZMA2", id, f+1, nfilters)
		}
	}
	if bh.dictCap == 0 {
		return bh, errors.New("no LZMA2 filter")
	}
	return bh, nil
}

// maxDictCap bounds the dictionary a compressed kernel may ask for (the
// kernel's own use 32 MiB for xz, 128 MiB windows for zstd -22), so that
// a damaged or hostile image cannot make the decoder allocate gigabytes.
const maxDictCap = 256 << 20

// lzma2DictCap decodes the LZMA2 dictionary-size property byte.
func lzma2DictCap(p byte) (int, error) {
	size := int64(2|int64(p&1)) << (p/2 + 11)
	if p == 40 || size > maxDictCap {
		return 0, fmt.Errorf("LZMA2 dictionary of %d bytes is over the %d autoprof allows", size, maxDictCap)
	}
	return int(max(size, lzma.MinDictCap)), nil
}

// xzVLI reads the variable-length integer at h[p:].
func xzVLI(h []byte, p int) (uint64, int, error) {
	var v uint64
	for i := 0; i < 9 && p < len(h); i++ {
		b := h[p]
		p++
		v |= uint64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return v, p, nil
		}
	}
	return 0, p, errors.New("bad variable-length integer in block header")
}

// bcjX86Decode undoes the xz x86 branch/call/jump filter in place, for a
// buffer that starts at stream position start. It follows bcj_x86() in
// xz-embedded (the kernel's lib/xz/xz_dec_bcj.c), which is in the public
// domain.
func bcjX86Decode(buf []byte, start uint32) {
	maskToAllowed := [8]bool{true, true, true, false, true, false, false, false}
	maskToBitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	msb := func(b byte) bool { return b == 0x00 || b == 0xff }
	if len(buf) <= 4 {
		return
	}
	size := len(buf) - 4
	prevPos := -1
	var prevMask uint32
	for i := 0; i < size; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		if d := i - prevPos; d > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << (d - 1)) & 7
			if prevMask != 0 {
				b := buf[i+4-int(maskToBitNum[prevMask])]
				if !maskToAllowed[prevMask] || msb(b) {
					prevPos = i
					prevMask = prevMask<<1 | 1
					continue
				}
			}
		}
		prevPos = i
		if !msb(buf[i+4]) {
			prevMask = prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src - (start + uint32(i) + 5)
			if prevMask == 0 {
				break
			}
			j := maskToBitNum[prevMask] * 8
			if !msb(byte(dest >> (24 - j))) {
				break
			}
			src = dest ^ (1<<(32-j) - 1)
		}
		dest &= 0x01ffffff
		dest |= -(dest & 0x01000000)
		binary.LittleEndian.PutUint32(buf[i+1:], dest)
		i += 4
	}
}
