package callgraph

// golang.org/x/arch/x86/x86asm does not know a few system instructions
// that kernel text holds: ENDBR64 at the start of every function under IBT,
// CLAC/STAC around user accesses once SMAP alternatives are applied, the
// VMX/SVM/SEV/TDX entry points, RDPID, RDSEED and others. Each is listed
// here with its exact encoding, as the Intel SDM and AMD APM give it and as
// objdump (binutils 2.40) decodes it; nothing is matched by a pattern wider
// than one instruction's encoding, so an unknown opcode is still reported
// as undecodable rather than guessed.

// extraInst is one encoding x86asm lacks.
type extraInst struct {
	name   string
	prefix byte   // mandatory prefix: 0, 0x66, 0xf2 or 0xf3
	opcode []byte // opcode bytes, including a fixed ModRM byte where there is one
	regRM  int    // -1: none; else a ModRM follows with reg field regRM and mod 11; anyReg: any ModRM, memory forms included
	kind   InstKind
}

// anyReg marks an encoding whose ModRM byte may take any form, with the
// SIB byte and displacement it implies.
const anyReg = 8

var extraInsts = []extraInst{
	{"endbr64", 0xf3, []byte{0x0f, 0x1e, 0xfa}, -1, KindEndbr},
	{"endbr32", 0xf3, []byte{0x0f, 0x1e, 0xfb}, -1, KindEndbr},
	{"rdssp", 0xf3, []byte{0x0f, 0x1e}, 1, KindOther},
	{"rdpid", 0xf3, []byte{0x0f, 0xc7}, 7, KindOther},
	{"rdseed", 0, []byte{0x0f, 0xc7}, 7, KindOther},
	{"tpause", 0x66, []byte{0x0f, 0xae}, 6, KindOther},
	{"umwait", 0xf2, []byte{0x0f, 0xae}, 6, KindOther},
	{"umonitor", 0xf3, []byte{0x0f, 0xae}, 6, KindOther},
	{"vmgexit", 0xf3, []byte{0x0f, 0x01, 0xd9}, -1, KindOther},
	{"setssbsy", 0xf3, []byte{0x0f, 0x01, 0xe8}, -1, KindOther},
	{"saveprevssp", 0xf3, []byte{0x0f, 0x01, 0xea}, -1, KindOther},
	{"rmpadjust", 0xf3, []byte{0x0f, 0x01, 0xfe}, -1, KindOther},
	{"psmash", 0xf3, []byte{0x0f, 0x01, 0xff}, -1, KindOther},
	{"rmpupdate", 0xf2, []byte{0x0f, 0x01, 0xfe}, -1, KindOther},
	{"pvalidate", 0xf2, []byte{0x0f, 0x01, 0xff}, -1, KindOther},
	{"lkgs", 0xf2, []byte{0x0f, 0x00}, 6, KindOther},
	{"tdcall", 0x66, []byte{0x0f, 0x01, 0xcc}, -1, KindOther},
	{"seamret", 0x66, []byte{0x0f, 0x01, 0xcd}, -1, KindOther},
	{"seamops", 0x66, []byte{0x0f, 0x01, 0xce}, -1, KindOther},
	{"seamcall", 0x66, []byte{0x0f, 0x01, 0xcf}, -1, KindOther},
	{"wruss", 0x66, []byte{0x0f, 0x38, 0xf5}, anyReg, KindOther},
	{"wrss", 0, []byte{0x0f, 0x38, 0xf6}, anyReg, KindOther},
	{"movdir64b", 0x66, []byte{0x0f, 0x38, 0xf8}, anyReg, KindOther},
	{"enqcmds", 0xf3, []byte{0x0f, 0x38, 0xf8}, anyReg, KindOther},
	{"movdiri", 0, []byte{0x0f, 0x38, 0xf9}, anyReg, KindOther},
	{"tilerelease", 0, []byte{0xc4, 0xe2, 0x78, 0x49, 0xc0}, -1, KindOther},
	// x86asm decodes these with a ModRM byte they do not have, one byte
	// too long (golang.org/x/arch v0.33.0).
	{"vzeroupper", 0, []byte{0xc5, 0xf8, 0x77}, -1, KindOther},
	{"vzeroall", 0, []byte{0xc5, 0xfc, 0x77}, -1, KindOther},
	{"vzeroupper", 0, []byte{0xc4, 0xe1, 0x78, 0x77}, -1, KindOther},
	{"vzeroall", 0, []byte{0xc4, 0xe1, 0x7c, 0x77}, -1, KindOther},
}

// extra0f01 are the register forms of group 7 (0F 01 /r with mod 11) that
// x86asm lacks, by ModRM byte.
var extra0f01 = map[byte]string{
	0xc1: "vmcall", 0xc2: "vmlaunch", 0xc3: "vmresume", 0xc4: "vmxoff",
	0xc5: "pconfig", 0xc6: "wrmsrns", 0xca: "clac", 0xcb: "stac",
	0xcf: "encls", 0xd4: "vmfunc", 0xd5: "xend", 0xd6: "xtest", 0xd7: "enclu",
	0xd8: "vmrun", 0xd9: "vmmcall", 0xda: "vmload", 0xdb: "vmsave",
	0xdc: "stgi", 0xdd: "clgi", 0xde: "skinit", 0xdf: "invlpga",
	0xe8: "serialize", 0xee: "rdpkru", 0xef: "wrpkru",
	0xfa: "monitorx", 0xfb: "mwaitx", 0xfc: "clzero", 0xfd: "rdpru",
	0xfe: "invlpgb", 0xff: "tlbsync",
}

// decodeExtra matches code against the encodings above and returns the
// instruction's name, length and kind.
func decodeExtra(code []byte) (string, int, InstKind, bool) {
	p, mandatory, ok := skipPrefixes(code)
	if !ok || p >= len(code) || code[p] != 0x0f && code[p] != 0xc4 && code[p] != 0xc5 {
		return "", 0, 0, false // every encoding here starts with 0F or a VEX prefix
	}
	if mandatory == 0 && len(code) >= p+3 && code[p] == 0x0f && code[p+1] == 0x01 {
		if name, ok := extra0f01[code[p+2]]; ok {
			return name, p + 3, KindOther, true
		}
	}
	for _, e := range extraInsts {
		if e.prefix != mandatory || len(code) < p+len(e.opcode) || string(code[p:p+len(e.opcode)]) != string(e.opcode) {
			continue
		}
		n := p + len(e.opcode)
		switch {
		case e.regRM < 0:
			return e.name, n, e.kind, true
		case e.regRM == anyReg:
			if m, ok := modrmLen(code[n:]); ok {
				return e.name, n + m, e.kind, true
			}
		case len(code) > n && code[n]>>6 == 3 && int(code[n]>>3&7) == e.regRM:
			return e.name, n + 1, e.kind, true
		}
	}
	return "", 0, 0, false
}

// skipPrefixes returns where the opcode starts and the last of the
// prefixes 66/F2/F3, which act as mandatory prefixes of the encodings above.
// A REX prefix must come last. Only encodings without a VEX prefix (and the
// one fixed VEX encoding of tilerelease) are matched.
func skipPrefixes(code []byte) (int, byte, bool) {
	var mandatory byte
	p := 0
	for ; p < len(code) && p < 14; p++ {
		switch b := code[p]; b {
		case 0x66, 0xf2, 0xf3:
			mandatory = b
		case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x67, 0xf0:
		default:
			if b&0xf0 == 0x40 { // REX
				return p + 1, mandatory, p+1 < len(code) && code[p+1]&0xf0 != 0x40
			}
			return p, mandatory, true
		}
	}
	return 0, 0, false
}

// modrmLen returns the length of a ModRM byte with its SIB byte and
// displacement, in 64-bit mode (the 0x67 prefix does not change it there).
func modrmLen(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	mod, rm := b[0]>>6, b[0]&7
	n := 1
	if mod != 3 && rm == 4 { // SIB
		if len(b) < 2 {
			return 0, false
		}
		n++
		if mod == 0 && b[1]&7 == 5 {
			n += 4
		}
	}
	switch {
	case mod == 0 && rm == 5: // RIP-relative
		n += 4
	case mod == 1:
		n++
	case mod == 2:
		n += 4
	}
	return n, len(b) >= n
}
