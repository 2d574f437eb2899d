/* SPDX-License-Identifier: GPL-2.0 */
/*
 * stubs.S - the trampoline pool and the stubs trampolines call.
 *
 * The pool is text of this module, so that every trampoline lies within
 * +-2 GiB of every core kernel site (modules are mapped there for the
 * same reason). patch.c writes it with text_poke.
 *
 * The stubs save what the C handlers may clobber: the caller-saved
 * registers and RFLAGS. Under SMAP they clear AC before calling C (popfq
 * restores it): the 3-byte nop at ap_clac_* becomes CLAC at load, written
 * with text_poke as the kernel's optprobes write theirs (synthesize_clac),
 * so that objtool sees no CLAC with AC already clear. The trampoline saved
 * %rdi (it holds the instrument id); every other register and RFLAGS come
 * back unchanged.
 *
 * objtool does not check this file alone (OBJECT_FILES_NON_STANDARD, see
 * Kbuild): the pool is data until written. ap_exit_tramp, entered by a
 * ret with no return address on the stack, is marked as a place where an
 * unwinder must stop; so are the trampolines, which have no ORC entry.
 */
#include <linux/linkage.h>
#include <asm/asm.h>
#include <linux/objtool.h>
#include <linux/version.h>
#include <asm/unwind_hints.h>
#include <asm/processor-flags.h>

#define AP_SLOT_SIZE	512	/* as in splice.h; ap_init checks */
#define AP_POOL_SLOTS	2048

	.section .text.autoprof_pool, "ax"
	.balign 4096
	.globl ap_pool
ap_pool:
	ANNOTATE_NOENDBR
	.fill AP_SLOT_SIZE * AP_POOL_SLOTS, 1, 0xcc
	.globl ap_pool_end
ap_pool_end:
	ANNOTATE_NOENDBR
	int3

	.text

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

/*
 * At a function's entry and at its return the arithmetic flags are dead
 * (no C function takes or returns them), and the handlers change neither
 * IF nor DF: RFLAGS needs restoring only where AC was set. popfq is slow.
 */
.macro AP_CLAC_IF_AC flags, name
	testl $X86_EFLAGS_AC, \flags(%rsp)
	jz .Lno_ac_\@
	AP_CLAC \name
.Lno_ac_\@:
.endm

.macro AP_RESTORE_AT_ENTRY
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

/* A 3-byte nop, CLAC under SMAP (see above). */
.macro AP_CLAC name
	.globl \name
\name:
	ANNOTATE_NOENDBR
	.byte 0x0f, 0x1f, 0x00
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
 * function's return address: ap_enter gets its address.
 */
SYM_FUNC_START(ap_stub_enter)
	AP_SAVE
	AP_CLAC_IF_AC 64, ap_clac_enter
	leaq 88(%rsp), %rsi
	call ap_enter
	AP_RESTORE_AT_ENTRY
	RET
SYM_FUNC_END(ap_stub_enter)

/* ap_stub_count: %edi = instrument id. */
SYM_FUNC_START(ap_stub_count)
	AP_SAVE
	AP_CLAC ap_clac_count
	call ap_count
	AP_RESTORE
	RET
SYM_FUNC_END(ap_stub_count)

/*
 * ap_exit_tramp is where a hijacked return lands. It makes room for the
 * real return address, saves everything (the function's return value in
 * %rax and %rdx included), asks ap_exit for the address, and returns there.
 */
SYM_CODE_START(ap_exit_tramp)
	ANNOTATE_NOENDBR
	/* Entered by a ret, with no return address: an unwinder stops here. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
	UNWIND_HINT_UNDEFINED
#else
	UNWIND_HINT_EMPTY
#endif
	pushq $0
	pushq %rdi
	AP_SAVE
	AP_CLAC_IF_AC 64, ap_clac_exit
	leaq 88(%rsp), %rdi
	call ap_exit
	movq %rax, 80(%rsp)
	AP_RESTORE_AT_ENTRY
	popq %rdi
	RET
SYM_CODE_END(ap_exit_tramp)
