#include "textflag.h"

// func enter(launch, st uintptr)
TEXT ·enter(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ st+8(FP), DI
	MOVQ SP, 0(DI)
	MOVQ BP, 8(DI)
	MOVQ R14, 16(DI)
	MOVQ R15, 24(DI)
	MOVQ launch+0(FP), AX
	JMP AX
