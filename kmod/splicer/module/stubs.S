/* SPDX-License-Identifier: GPL-2.0 */
/*
 * stubs.S - the stubs trampolines call, checked by objtool like any kernel
 * code: it writes their ORC entries (an unwinder walks through them) and
 * lists their returns in .return_sites, so that the kernel applies its
 * return-thunk choice (retbleed, SRSO) to them when it loads the module.
 *
 * A stub saves what the C handler may clobber: the caller-saved registers
 * and RFLAGS. Under SMAP it clears AC before calling C and gives it back
 * after (below): the 3-byte nops at ap_clac_* and ap_stac_* become CLAC
 * and STAC at load, written with text_poke as the kernel's optprobes write
 * theirs (synthesize_clac), so that objtool, which checks user-access
 * regions, sees neither. The trampoline saved %rdi (it holds the
 * instrument id); every other register comes back unchanged, the return
 * value of a function returning through ap_stub_exit included, and so do
 * AC and the flags that may be read (below).
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

/* A 3-byte nop, CLAC (or STAC) under SMAP (see above). */
.macro AP_SMAP_NOP name
	.globl \name
\name:
	ANNOTATE_NOENDBR
	.byte 0x0f, 0x1f, 0x00
.endm

/*
 * AC. The instrumented code may run inside a user-access region (after
 * STAC, AC set), and the handlers are C that must not: each stub clears AC
 * before the call and gives it back as it was after, on its one way out
 * (a handler's misses and errors return through it too). Where AC was
 * clear, neither CLAC nor STAC runs.
 *
 * The arithmetic flags. Where they are dead after the trampoline (a
 * function's entry: no C function takes them, site.c checks that an
 * entry window follows the ftrace site of a compiled function; the
 * returns and tail calls of such a function, whose callers keep no flags
 * across a call; a block window whose next instructions write every flag
 * before reading one), only AC needs giving back, and a conditional STAC
 * does it: the handlers change neither IF nor DF.
 *
 * Where they may be live, the _flags stubs CLAC unconditionally, as
 * optprobes do, and give back the arithmetic flags and AC as saved, the
 * other bits of RFLAGS as they are now (the same, but for an emulator's
 * mistakes): RFLAGS is rebuilt from both words before popfq. Why not the
 * saved word whole: QEMU's TCG before 8.0 computes a cmpxchg16b's flags
 * from the last flags operation it recorded rather than the last one run;
 * after a popfq (or an interrupt's iretq) that is the whole RFLAGS word,
 * and an add between it and the kernel's per-CPU cmpxchg16b leaves the
 * add's operand in the flags: TF, NT, IOPL and reserved bits at random,
 * which a later pushfq saves. A stub must not load those back (a
 * single-step trap in the allocator, a double fault), and the stubs for
 * dead flags run no popfq at all, so as not to start that state.
 */
.macro AP_CLAC_IF_AC flags, name
	testl $X86_EFLAGS_AC, \flags(%rsp)
	jz .Lno_ac_\@
	AP_SMAP_NOP \name
.Lno_ac_\@:
.endm

.macro AP_RESTORE_REGS_BUT_RAX
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rsi
	popq %rdx
	popq %rcx
.endm

/* Registers and AC (STAC at \name under SMAP); the flags are dead. */
.macro AP_RESTORE_AC name
	AP_RESTORE_REGS_BUT_RAX
	popq %rax
	testl $X86_EFLAGS_AC, (%rsp)
	jz .Lno_stac_\@
	AP_SMAP_NOP \name
.Lno_stac_\@:
	leaq 8(%rsp), %rsp
.endm

#define AP_SAVED_FLAGS (X86_EFLAGS_CF | X86_EFLAGS_PF | X86_EFLAGS_AF | X86_EFLAGS_ZF | \
			X86_EFLAGS_SF | X86_EFLAGS_OF | X86_EFLAGS_AC)

/*
 * Registers, the arithmetic flags and AC as saved, the rest of RFLAGS
 * (IF, DF, TF, ...) as it is now; the flags may be live.
 */
.macro AP_RESTORE
	AP_RESTORE_REGS_BUT_RAX
	pushfq
	popq %rax
	andl $~AP_SAVED_FLAGS, %eax
	andq $AP_SAVED_FLAGS, 8(%rsp)
	orq %rax, 8(%rsp)
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
	AP_RESTORE_AC ap_stac_enter
	RET
SYM_FUNC_END(ap_stub_enter)

/*
 * ap_stub_exit: called from a return window, where the stack pointer was
 * at the return address: above the return into the trampoline and the
 * saved %rdi, as for ap_stub_enter. ap_stub_exit serves the returns and
 * tail calls of a compiled function (an ftrace site at its entry), whose
 * callers read no flags it leaves; ap_stub_exit_flags any other's (a .cold
 * part's: site.c does not tell whose part it is).
 */
SYM_FUNC_START(ap_stub_exit)
	AP_SAVE
	AP_CLAC_IF_AC 64, ap_clac_exit
	leaq 88(%rsp), %rdi
	call ap_exit
	AP_RESTORE_AC ap_stac_exit
	RET
SYM_FUNC_END(ap_stub_exit)

SYM_FUNC_START(ap_stub_exit_flags)
	AP_SAVE
	AP_SMAP_NOP ap_clac_exit_flags
	leaq 88(%rsp), %rdi
	call ap_exit
	AP_RESTORE
	RET
SYM_FUNC_END(ap_stub_exit_flags)

/* ap_stub_count: %edi = instrument id; the flags are dead. */
SYM_FUNC_START(ap_stub_count)
	AP_SAVE
	AP_CLAC_IF_AC 64, ap_clac_count
	call ap_count
	AP_RESTORE_AC ap_stac_count
	RET
SYM_FUNC_END(ap_stub_count)

/* ap_stub_count_flags: %edi = instrument id; the flags may be live. */
SYM_FUNC_START(ap_stub_count_flags)
	AP_SAVE
	AP_SMAP_NOP ap_clac_count_flags
	call ap_count
	AP_RESTORE
	RET
SYM_FUNC_END(ap_stub_count_flags)
