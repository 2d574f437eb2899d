// SPDX-License-Identifier: GPL-2.0
/*
 * site.c - what a window may be, checked against the kernel's own view of
 * its text whatever the controller claims. The controller's catalogue
 * (splice/patch) applies the same rules and more; these are the ones the
 * module keeps itself, so that no request can make it splice where the
 * kernel's own patchers would refuse (docs/splice-safety.md maps each to
 * the checks of optprobes' can_optimize() and check_kprobe_address_safe()):
 *
 *  - kallsyms names the function (or .cold part) the request claims, and
 *    the window lies inside it, in core kernel text; the function is not on
 *    the kprobe blacklist (which holds .entry.text, .noinstr.text and
 *    .kprobes.text as well);
 *  - no exception-table entry has its instruction or its fixup in the
 *    function;
 *  - no other patcher owns a byte of the window: jump labels, static calls,
 *    the ftrace site, SMP alternatives (the kernel's own *_text_reserved());
 *  - the kernel's decoder, run over the function's live bytes from its
 *    start (our own windows stepped over) to its end, decodes every byte
 *    (as can_optimize() asks: an undecodable stretch hides branches),
 *    reaches the window's first byte and its end at instruction
 *    boundaries, and meets no indirect jump, no int3 but padding after an
 *    instruction that never falls through, and none where the kernel has
 *    a kprobe (another's breakpoint), no jump out of the kernel's text (an
 *    optprobe's) and no branch into the window after its first byte; nor
 *    does any jump label's target lie there;
 *  - the window holds what the request expects;
 *  - by role: an entry window starts right after ENDBR and the ftrace site
 *    (so the return address is at the stack pointer and the flags are
 *    dead); a return window is a return or a tail call and nothing else.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/jump_label.h>
#include <asm/insn.h>
#include <asm/nops.h>
#include <asm/text-patching.h>
#include <asm/nospec-branch.h>

#include "splice.h"

#define FENTRY_SIZE	5	/* MCOUNT_INSN_SIZE */

bool ap_ours(unsigned long addr)
{
	return addr >= (unsigned long)ap_pool && addr < (unsigned long)ap_pool_end;
}

static bool ap_core_text(unsigned long addr)
{
	return addr >= ap_k.stext && addr < ap_k.etext;
}

/*
 * ap_lookup has kallsyms name addr: the symbol's name in buf, the offset
 * and size. A module's symbol ("... [mod]") or none is -EPERM.
 */
static int ap_lookup(unsigned long addr, char *buf, unsigned long *off, unsigned long *size)
{
	char *plus, *slash;

	sprint_symbol(buf, addr);
	plus = strrchr(buf, '+');
	slash = strrchr(buf, '/');
	if (!plus || !slash || slash < plus || strchr(slash, ' '))
		return -EPERM;
	*plus = 0;
	*slash = 0;
	if (kstrtoul(plus + 1, 16, off) || kstrtoul(slash + 1, 16, size))
		return -EPERM;
	return 0;
}

/* ap_check_name checks that kallsyms places the window in the function claimed. */
static int ap_check_name(struct ap_splice *sp, struct ap_window *w)
{
	char buf[KSYM_SYMBOL_LEN];
	unsigned long off;
	int err;

	if (!ap_core_text(sp->addr) || !ap_core_text(sp->addr + sp->len - 1))
		return -EPERM;
	err = ap_lookup(sp->addr, buf, &off, &w->size);
	if (err)
		return err;
	sp->name[AP_NAME_LEN - 1] = 0;
	if (strcmp(buf, sp->name)) {
		strscpy(sp->found, buf, AP_NAME_LEN);
		return -ENOENT;
	}
	w->func = sp->addr - off;
	if (w->func != sp->func || off + sp->len > w->size)
		return -ERANGE;
	return 0;
}

/* ap_extable_meets reports whether an exception entry's instruction or fixup lies in [start, end). */
static bool ap_extable_meets(unsigned long start, unsigned long end)
{
	const struct exception_table_entry *e;

	for (e = ap_k.ex_start; e < ap_k.ex_stop; e++) {
		unsigned long insn = (unsigned long)&e->insn + e->insn;
		unsigned long fixup = (unsigned long)&e->fixup + e->fixup;

		if ((insn >= start && insn < end) || (fixup >= start && fixup < end))
			return true;
	}
	return false;
}

/* ap_jump_target_in reports whether a jump label jumps into [start, end] once flipped. */
static bool ap_jump_target_in(unsigned long start, unsigned long end)
{
	const struct jump_entry *e;

	for (e = ap_k.jump_start; e < ap_k.jump_stop; e++) {
		unsigned long t = (unsigned long)&e->target + e->target;

		if (t >= start && t <= end)
			return true;
	}
	return false;
}

/* ap_reserved reports whether another patcher owns a byte of [start, end]. */
static bool ap_reserved(unsigned long start, unsigned long end)
{
	void *s = (void *)start, *e = (void *)end;

	return ap_jump_label_reserved(s, e) || ap_static_call_reserved(s, e) ||
	       ap_ftrace_reserved(s, e) || ap_alternatives_reserved(s, e);
}

/* ap_entry_site returns the offset of a function's entry site: past ENDBR (or its seal) and the ftrace site. */
static unsigned int ap_entry_site(const struct ap_window *w)
{
	static const u8 endbr[][4] = {
		{ 0xf3, 0x0f, 0x1e, 0xfa },	/* endbr64 */
		{ 0x66, 0x0f, 0x1f, 0x00 },	/* its seal, 6.4+ */
		{ 0x0f, 0x1f, 0x40, 0xd6 },	/* its seal, 6.2 and 6.3 */
	};
	static const u8 nop5[] = { BYTES_NOP5 };
	const u8 *p = (const u8 *)w->func;
	unsigned int off = 0, i;

	for (i = 0; i < ARRAY_SIZE(endbr) && w->size >= 4; i++)
		if (!memcmp(p, endbr[i], 4))
			off = 4;
	if (off + FENTRY_SIZE > w->size)
		return 0;
	if (memcmp(p + off, nop5, FENTRY_SIZE) && p[off] != CALL_INSN_OPCODE)
		return 0;
	return off + FENTRY_SIZE;
}

struct ap_walk {
	unsigned long lo, hi;	/* no branch may land in [lo, hi] */
	unsigned long *skip;	/* our windows in the function, by address */
	unsigned int nskip;
};

static int ap_cmp_ulong(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

/*
 * ap_check_branch refuses a direct jump out of the kernel's text (not to
 * one of our trampolines), into a retpoline thunk (an indirect jump), or
 * into the window after its first byte.
 */
static int ap_check_branch(const struct insn *insn, unsigned long at, const struct ap_walk *k)
{
	char buf[KSYM_SYMBOL_LEN];
	unsigned long to, off, size;

	if (insn->opcode.bytes[0] == 0xff && insn->opcode.nbytes == 1 &&
	    (X86_MODRM_REG(insn->modrm.value) == 4 || X86_MODRM_REG(insn->modrm.value) == 5))
		return -EPERM;	/* an indirect jump: its targets are unknown */
	if (!ap_insn_branch(insn, at, &to))
		return 0;
	if (to >= k->lo && to <= k->hi)
		return -EPERM;
	if (ap_ours(to))
		return 0;
	if (!ap_core_text(to))
		return -EXDEV;	/* another patcher's jump (an optprobe's) */
	if (!ap_lookup(to, buf, &off, &size) && !off && !strncmp(buf, "__x86_indirect_", 15))
		return -EPERM;	/* through a retpoline thunk */
	return 0;
}

/* ap_padding reports whether [at, end) is all int3: the padding after a function's code. */
static bool ap_padding(unsigned long at, unsigned long end)
{
	for (; at < end; at++)
		if (*(u8 *)at != INT3_INSN_OPCODE)
			return false;
	return true;
}

/*
 * ap_walk_function decodes the function's live bytes from its start to
 * its end, stepping over our own windows, and checks each instruction
 * (see the top of this file). The window must start and end at
 * instruction boundaries. An int3 is another's breakpoint where the kernel
 * has a kprobe there (at a block that follows a jmp or ret, where an int3
 * may also be the compiler's), or where it does not follow an instruction
 * that never falls through, unless only int3s follow it to the end: the
 * padding after a call that does not return.
 */
static int ap_walk_function(const struct ap_splice *sp, const struct ap_window *w, struct ap_walk *k)
{
	unsigned long at = w->func, end = w->func + w->size;
	bool start = false, stop = false, after_end = false;
	unsigned int s = 0;
	struct insn insn;
	int err;

	while (at < end) {
		start |= at == sp->addr;
		stop |= at == sp->addr + sp->len;
		while (s < k->nskip && k->skip[s] < at)
			s++;
		if (s < k->nskip && k->skip[s] == at) {
			const struct ap_site *ours = ap_site_of(at);

			at += ours->len;
			after_end = ours->role == AP_RETURN;
			continue;
		}
		if (ap_insn_decode(&insn, (void *)at, min_t(unsigned long, end - at, MAX_INSN_SIZE)))
			return at < sp->addr + sp->len ? -EILSEQ : -ENOEXEC;
		if (insn.opcode.nbytes == 1 && insn.opcode.bytes[0] == INT3_INSN_OPCODE) {
			if (ap_kprobe_at(at))
				return -EEXIST;	/* a kprobe's breakpoint */
			if (!after_end) {
				if (!ap_padding(at, end))
					return -EBUSY;	/* another's breakpoint */
				break;
			}
		}
		err = ap_check_branch(&insn, at, k);
		if (err)
			return err;
		after_end = ap_insn_ends(&insn);
		at += insn.length;
	}
	stop |= at == sp->addr + sp->len;
	return start && stop ? 0 : -EILSEQ;
}

/* ap_our_windows lists the addresses of our windows in [start, end), sorted. */
static int ap_our_windows(unsigned long start, unsigned long end, struct ap_walk *k)
{
	unsigned int n = 0, i;
	struct ap_site *s;

	for (i = 0; i < AP_POOL_SLOTS; i++) {
		s = ap_site_of_slot(i);
		if (s->state != AP_S_FREE && s->addr >= start && s->addr < end)
			n++;
	}
	k->nskip = 0;
	k->skip = n ? kcalloc(n, sizeof(*k->skip), GFP_KERNEL) : NULL;
	if (n && !k->skip)
		return -ENOMEM;
	for (i = 0; i < AP_POOL_SLOTS && k->nskip < n; i++) {
		s = ap_site_of_slot(i);
		if (s->state != AP_S_FREE && s->addr >= start && s->addr < end)
			k->skip[k->nskip++] = s->addr;
	}
	sort(k->skip, k->nskip, sizeof(*k->skip), ap_cmp_ulong, NULL);
	return 0;
}

/*
 * ap_check_tail checks a return window's jump to another function: the
 * target must be a function's start in core text, and not its own .cold
 * part (a jump there is not a call).
 */
static int ap_check_tail(const struct ap_splice *sp, unsigned long to)
{
	const char *cold = strstr(sp->name, ".cold");
	size_t parent = cold ? cold - sp->name : strlen(sp->name);
	char buf[KSYM_SYMBOL_LEN];
	unsigned long off, size;

	if (!ap_core_text(to) || ap_lookup(to, buf, &off, &size) || off)
		return -EPERM;
	if (!strncmp(buf, sp->name, parent) && !strncmp(buf + parent, ".cold", 5))
		return -EPERM;
	return 0;
}

static s32 ap_s32(const u8 *p)
{
	s32 v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* ap_check_return recognises a return window: a return, or a tail call. */
static int ap_check_return(const struct ap_splice *sp, struct ap_window *w)
{
	static const u8 plain[] = { RET_INSN_OPCODE, INT3_INSN_OPCODE, INT3_INSN_OPCODE,
				    INT3_INSN_OPCODE, INT3_INSN_OPCODE };
	const u8 *p = sp->orig;

	if (sp->ninst)
		return -EINVAL;
	if (sp->len == sizeof(plain) && !memcmp(p, plain, sizeof(plain))) {
		w->form = AP_RET_PLAIN;
		return 0;
	}
	if (sp->len == JMP32_INSN_SIZE && p[0] == JMP32_INSN_OPCODE) {
		w->target = sp->addr + JMP32_INSN_SIZE + ap_s32(p + 1);
		if (w->target == (unsigned long)__x86_return_thunk ||
		    w->target == (unsigned long)READ_ONCE(*ap_k.return_thunk)) {
			w->form = AP_RET_THUNK;
			return 0;
		}
		w->form = AP_RET_TAIL;
		return ap_check_tail(sp, w->target);
	}
	if (sp->len == 6 && p[0] == 0x0f && (p[1] & 0xf0) == 0x80) {
		w->target = sp->addr + 6 + ap_s32(p + 2);
		w->form = AP_RET_TAIL_CC;
		w->cc = p[1] & 0xf;
		return ap_check_tail(sp, w->target);
	}
	return -EPERM;
}

/* ap_refuse returns err, saying why in the request's found field. */
static int ap_refuse(struct ap_splice *sp, int err, const char *why)
{
	strscpy(sp->found, why, AP_NAME_LEN);
	return err;
}

/* ap_check_role applies what the window's role requires. */
static int ap_check_role(struct ap_splice *sp, struct ap_window *w)
{
	u32 i;

	w->entry = ap_entry_site(w);
	switch (sp->role) {
	case AP_ENTRY:
		if (!w->entry || sp->addr != w->func + w->entry)
			return ap_refuse(sp, -EPERM, "not the function's entry site");
		return 0;
	case AP_BLOCK:
		for (i = 0; i < sp->ninst; i++)
			if (sp->insts[i].kind != AP_COUNT)
				return ap_refuse(sp, -EINVAL, "a timer or exit counter at a block window");
		if (sp->addr < w->func + w->entry)
			return ap_refuse(sp, -EPERM, "before the entry site (ENDBR, ftrace)");
		return 0;
	case AP_RETURN:
		if (ap_check_return(sp, w))
			return ap_refuse(sp, -EPERM, "not a return or a tail call");
		return 0;
	}
	return ap_refuse(sp, -EINVAL, "no such role");
}

/*
 * ap_check_site checks splice sp (see the top of this file) and fills w.
 * Called with text_mutex and ap_lock held; nothing is written.
 */
int ap_check_site(struct ap_splice *sp, struct ap_window *w)
{
	unsigned long end = sp->addr + sp->len;
	struct ap_walk k;
	int err;

	memset(w, 0, sizeof(*w));
	err = ap_check_name(sp, w);
	err = err ?: ap_check_role(sp, w);
	if (err)
		return err;
	if (ap_kprobe_blacklisted(w->func) || ap_kprobe_blacklisted(sp->addr))
		return ap_refuse(sp, -EPERM, "on the kprobe blacklist");
	if (ap_extable_meets(w->func, w->func + w->size))
		return ap_refuse(sp, -EPERM, "the function has exception-table entries");
	if (ap_reserved(sp->addr, end - 1))
		return ap_refuse(sp, -EPERM, "text another patcher owns (jump label, static call, ftrace, alternative)");
	k.lo = sp->addr + 1;
	k.hi = sp->role == AP_RETURN ? end - 1 : end;
	if (ap_jump_target_in(k.lo, k.hi))
		return ap_refuse(sp, -EPERM, "a jump label's target is in the window");
	err = ap_our_windows(w->func, w->func + w->size, &k);
	if (err)
		return err;
	err = ap_walk_function(sp, w, &k);
	kfree(k.skip);
	switch (err) {
	case -EILSEQ:
		return ap_refuse(sp, err, "the decoder does not find the window at instruction boundaries");
	case -EBUSY:
		return ap_refuse(sp, err, "another's int3 in the function's code (a kprobe?)");
	case -ENOEXEC:
		return ap_refuse(sp, err, "undecodable bytes in the function after the window: its branches are not all known");
	case -EEXIST:
		return ap_refuse(sp, -EBUSY, "a kprobe's int3 in the function's code (the kernel has a kprobe there)");
	case -EXDEV:
		return ap_refuse(sp, -EBUSY, "a jump out of the kernel's text in the function (an optprobe?)");
	case -EPERM:
		return ap_refuse(sp, err, "an indirect jump, or a branch into the window");
	}
	return err;
}
