/* SPDX-License-Identifier: GPL-2.0 */
/*
 * stubs.S - the stubs trampolines call, checked by objtool like any kernel
 * code: it writes their ORC entries (an unwinder walks through them) and
 * lists their returns in .return_sites, so that the kernel applies its
 * return-thunk choice (retbleed, SRSO) to them when it loads the module.
 *
 * A stub saves what the C handler may clobber: the caller-saved registers
 * and RFLAGS. Under SMAP it clears AC before calling C: the 3-byte nop at
 * ap_clac_* becomes CLAC at load, written with text_poke as the kernel's
 * optprobes write theirs (synthesize_clac), so that objtool sees no CLAC
 * with AC already clear. The trampoline saved %rdi (it holds the
 * instrument id); every other register and RFLAGS come back unchanged, the
 * return value of a function returning through ap_stub_exit included.
 */
#include <linux/linkage.h>
#include <asm/asm.h>
#include <linux/objtool.h>
#include <asm/processor-flags.h>

.macro AP_SAVE
	pushfq
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
.endm

/* A 3-byte nop, CLAC under SMAP (see above). */
.macro AP_CLAC name
	.globl \name
\name:
	ANNOTATE_NOENDBR
	.byte 0x0f, 0x1f, 0x00
.endm

/*
 * At a function's entry the arithmetic flags are dead (no C function takes
 * them; site.c checks that an entry window follows the ftrace site of a
 * compiled function), and the handlers change neither IF nor DF: RFLAGS
 * needs restoring only where AC was set. popfq is slow.
 */
.macro AP_CLAC_IF_AC flags, name
	testl $X86_EFLAGS_AC, \flags(%rsp)
	jz .Lno_ac_\@
	AP_CLAC \name
.Lno_ac_\@:
.endm

.macro AP_RESTORE_AT_EDGE
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	testl $X86_EFLAGS_AC, (%rsp)
	jz .Lskip_popf_\@
	popfq
	jmp .Lpopped_\@
.Lskip_popf_\@:
	leaq 8(%rsp), %rsp
.Lpopped_\@:
.endm

.macro AP_RESTORE
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	popfq
.endm

/*
 * ap_stub_enter: %edi = instrument id. The stack holds the return into the
 * trampoline, the trampoline's saved %rdi, then the instrumented
 * function's return address: ap_enter gets its address, the frame's key.
 */
SYM_FUNC_START(ap_stub_enter)
	AP_SAVE
	AP_CLAC_IF_AC 64, ap_clac_enter
	leaq 88(%rsp), %rsi
	call ap_enter
	AP_RESTORE_AT_EDGE
	RET
SYM_FUNC_END(ap_stub_enter)

/*
 * ap_stub_exit: called from a return window, where the stack pointer was
 * at the return address: above the return into the trampoline and the
 * saved %rdi, as for ap_stub_enter. A tail call's target is only known to
 * start a function by kallsyms, so RFLAGS comes back whole.
 */
SYM_FUNC_START(ap_stub_exit)
	AP_SAVE
	AP_CLAC_IF_AC 64, ap_clac_exit
	leaq 88(%rsp), %rdi
	call ap_exit
	AP_RESTORE
	RET
SYM_FUNC_END(ap_stub_exit)

/* ap_stub_count: %edi = instrument id. Flags may be live: all restored. */
SYM_FUNC_START(ap_stub_count)
	AP_SAVE
	AP_CLAC ap_clac_count
	call ap_count
	AP_RESTORE
	RET
SYM_FUNC_END(ap_stub_count)
