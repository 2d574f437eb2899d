package patch

import "golang.org/x/arch/x86/x86asm"

// flagEffect is what an instruction does to the arithmetic flags
// (CF, PF, AF, ZF, SF, OF).
type flagEffect uint8

const (
	flagsOther     flagEffect = iota // unknown: assume it reads them
	flagsNone                        // neither reads nor writes them
	flagsRead                        // reads some
	flagsWriteAll                    // writes all six without reading any
	flagsWriteNoCF                   // writes all but CF (inc, dec)
)

var flagEffects = map[x86asm.Op]flagEffect{}

func init() {
	set := func(e flagEffect, ops ...x86asm.Op) {
		for _, op := range ops {
			flagEffects[op] = e
		}
	}
	set(flagsNone, x86asm.MOV, x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD, x86asm.LEA,
		x86asm.PUSH, x86asm.POP, x86asm.NOP, x86asm.XCHG, x86asm.BSWAP, x86asm.NOT,
		x86asm.CBW, x86asm.CWDE, x86asm.CDQE, x86asm.CWD, x86asm.CDQ, x86asm.CQO,
		x86asm.PREFETCHNTA, x86asm.PREFETCHT0, x86asm.PREFETCHT1, x86asm.PREFETCHT2, x86asm.PREFETCHW)
	set(flagsWriteAll, x86asm.ADD, x86asm.SUB, x86asm.AND, x86asm.OR, x86asm.XOR,
		x86asm.CMP, x86asm.TEST, x86asm.NEG, x86asm.IMUL, x86asm.MUL, x86asm.XADD,
		x86asm.CMPXCHG)
	set(flagsWriteNoCF, x86asm.INC, x86asm.DEC)
	set(flagsRead, x86asm.ADC, x86asm.SBB, x86asm.PUSHF, x86asm.PUSHFQ, x86asm.LAHF,
		x86asm.RCL, x86asm.RCR)
	for _, op := range []x86asm.Op{
		x86asm.CMOVA, x86asm.CMOVAE, x86asm.CMOVB, x86asm.CMOVBE, x86asm.CMOVE, x86asm.CMOVG,
		x86asm.CMOVGE, x86asm.CMOVL, x86asm.CMOVLE, x86asm.CMOVNE, x86asm.CMOVNO, x86asm.CMOVNP,
		x86asm.CMOVNS, x86asm.CMOVO, x86asm.CMOVP, x86asm.CMOVS,
		x86asm.SETA, x86asm.SETAE, x86asm.SETB, x86asm.SETBE, x86asm.SETE, x86asm.SETG,
		x86asm.SETGE, x86asm.SETL, x86asm.SETLE, x86asm.SETNE, x86asm.SETNO, x86asm.SETNP,
		x86asm.SETNS, x86asm.SETO, x86asm.SETP, x86asm.SETS,
		x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
		x86asm.JP, x86asm.JS,
	} {
		flagEffects[op] = flagsRead
	}
}

// effect returns in's effect on the arithmetic flags. A shift or rotate
// by an immediate count other than 0 writes them (some undefined, which
// is as good as written); by CL it may leave them alone.
func effect(in x86asm.Inst) flagEffect {
	switch in.Op {
	case x86asm.SHL, x86asm.SHR, x86asm.SAR:
		if imm, ok := in.Args[1].(x86asm.Imm); ok && imm&0x3f != 0 {
			return flagsWriteAll
		}
		return flagsOther
	}
	if e, ok := flagEffects[in.Op]; ok {
		return e
	}
	return flagsOther
}

// FlagsDead reports whether the arithmetic flags are dead before the
// straight-line sequence insts: along it, every flag is written before any
// is read. An instruction of unknown effect, or the end of the sequence
// before every flag is written, makes them live. It is a liveness pass
// over one path, so it proves deadness only where that path is the only
// one: the window and what follows it up to the first flag write.
func FlagsDead(insts []x86asm.Inst) bool {
	for _, in := range insts {
		switch effect(in) {
		case flagsNone, flagsWriteNoCF:
			// inc and dec leave CF as it was: it may still be read.
		case flagsWriteAll:
			return true
		default:
			return false
		}
	}
	return false
}
