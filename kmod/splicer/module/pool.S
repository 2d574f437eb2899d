/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pool.S - the trampoline pool. It is text of this module, so that every
 * trampoline lies within +-2 GiB of every core kernel site (modules are
 * mapped there for the same reason), written only with text_poke. It
 * holds no code until patch.c writes a trampoline into a slot, which is why
 * objtool does not check this file (Kbuild); the stubs, which are code,
 * are in stubs.S and checked like any kernel code.
 */
#include <linux/linkage.h>
#include <linux/objtool.h>

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
