// SPDX-License-Identifier: GPL-2.0
/*
 * tramp.c - trampolines, built here from a window and the kinds of its
 * instruments: the controller names the place and the kinds, never code.
 *
 * The window's instructions were decoded by the kernel's own decoder
 * (insn_decode, in site.c), and each is checked here against an allowlist
 * of instructions that may run out of place, as can_boost() lets kprobes
 * run some from their slots: no control transfer, nothing that reads the
 * instruction pointer but through a RIP-relative operand, no prefix but
 * lock, operand size and %gs. A RIP-relative displacement is rewritten for
 * the trampoline's address, with a signed 32-bit range check.
 *
 * A block or entry window's trampoline:
 *	each instrument in turn (a counter's fast path inline)
 *	the displaced instructions, relocated
 *	jmp site+len; int3
 *	each counter's slow path: call into the module, jmp to the next one
 * A return window's (a return, or a tail call: the frames of the
 * function's timers end here, popped by the stack pointer):
 *	[j!cc .Lnot]				(a conditional tail call)
 *	push %rdi; call ap_stub_exit[_flags]; pop %rdi
 *	the return or the tail call, as the window holds it; int3
 *	[.Lnot: jmp site+len; int3]
 *
 * Where the flags may be live after the window (AP_O_FLAGS), the counters
 * save them and call ap_stub_count_flags, and a return window calls
 * ap_stub_exit_flags: those give the arithmetic flags and AC back with
 * popfq, which the other stubs avoid (they give back AC alone, see
 * stubs.S). A return window's flags are dead where its part starts with
 * an ftrace site (ap_entry_site): a compiled function, called by the C
 * ABI, which keeps no flags across a call. A .cold part, or code that is
 * not compiled C, has none: its flags count as live.
 *
 * They are byte for byte what splice/patch.Build encodes (whose tests run
 * such code in a harness); the VM tests compare the two.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/cache.h>
#include <linux/string.h>
#include <linux/stddef.h>
#include <asm/insn.h>
#include <asm/text-patching.h>

#include "splice.h"

#define PUSH_RAX	0x50
#define PUSH_RDI	0x57
#define POP_RAX		0x58
#define POP_RDI		0x5f
#define PUSHF		0x9c
#define POPF		0x9d
#define MOV_EDI_IMM	0xbf
#define JCC32_OPCODE	0x80	/* after 0x0f: 0f 8x rel32 */
#define CC_NE		0x5

/* Is this CPU's and this kernel's gs-relative layout one the fast path can encode? */
static bool ap_fast_path;

/* ap_modrm_reg returns the reg field of an instruction's ModRM. */
static inline int ap_modrm_reg(const struct insn *insn)
{
	return X86_MODRM_REG(insn->modrm.value);
}

/* ap_prefixes_ok allows lock, operand size and %gs, and a plain REX. */
static bool ap_prefixes_ok(const struct insn *insn)
{
	insn_byte_t p;
	int i;

	if (insn->vex_prefix.nbytes || insn->rex_prefix.nbytes > 1)
		return false;
	for_each_insn_prefix(insn, i, p) {
		if (p != 0xf0 && p != 0x66 && p != 0x65)
			return false;
	}
	return true;
}

static bool ap_movable_1(const struct insn *insn, u8 op)
{
	int reg = ap_modrm_reg(insn);

	if (op < 0x40)		/* add, or, adc, sbb, and, sub, xor, cmp */
		return (op & 7) < 6;
	switch (op) {
	case 0x50 ... 0x5f:	/* push, pop */
	case 0x63:		/* movsxd */
	case 0x68: case 0x6a:	/* push imm */
	case 0x69: case 0x6b:	/* imul */
	case 0x80: case 0x81: case 0x83:
	case 0x84 ... 0x8b:	/* test, xchg, mov */
	case 0x8d:		/* lea */
	case 0x90 ... 0x99:	/* nop, xchg, cbw, cwd */
	case 0xa0 ... 0xa3:	/* mov moffs */
	case 0xa8: case 0xa9:	/* test imm */
	case 0xb0 ... 0xbf:	/* mov imm */
		return true;
	case 0x8f:		/* pop r/m */
	case 0xc6: case 0xc7:	/* mov imm r/m, not xabort/xbegin */
		return reg == 0;
	case 0xc0: case 0xc1: case 0xd0 ... 0xd3:
		return reg != 2 && reg != 3;	/* shifts and rotates, not through carry */
	case 0xf6: case 0xf7:
		return reg < 6;			/* test, not, neg, mul, imul: no div */
	case 0xfe:
		return reg < 2;			/* inc, dec */
	case 0xff:
		return reg < 2 || reg == 6;	/* inc, dec, push: no call or jmp */
	}
	return false;
}

static bool ap_movable_2(const struct insn *insn, u8 op)
{
	int reg = ap_modrm_reg(insn);

	switch (op) {
	case 0x19 ... 0x1f:	/* hint nops */
	case 0x40 ... 0x4f:	/* cmov */
	case 0x90 ... 0x9f:	/* setcc */
	case 0xa3: case 0xab: case 0xb3: case 0xbb:	/* bt, bts, btr, btc */
	case 0xa4: case 0xa5: case 0xac: case 0xad:	/* shld, shrd */
	case 0xaf:		/* imul */
	case 0xb0: case 0xb1:	/* cmpxchg */
	case 0xb6: case 0xb7: case 0xbe: case 0xbf:	/* movzx, movsx */
	case 0xbc: case 0xbd:	/* bsf, bsr */
	case 0xc0: case 0xc1:	/* xadd */
	case 0xc8 ... 0xcf:	/* bswap */
		return true;
	case 0xba:
		return reg >= 4;	/* bt* imm */
	}
	return false;
}

/*
 * ap_insn_movable reports whether an instruction may run displaced, in a
 * trampoline: the allowlist of splice/patch's CheckMovable, by opcode.
 */
bool ap_insn_movable(const struct insn *insn)
{
	const u8 *op = insn->opcode.bytes;

	if (!ap_prefixes_ok(insn))
		return false;
	if (insn->opcode.nbytes == 1)
		return ap_movable_1(insn, op[0]);
	if (insn->opcode.nbytes == 2 && op[0] == 0x0f)
		return ap_movable_2(insn, op[1]);
	return false;
}

/*
 * ap_insn_branch returns the target of a direct jump (jmp, jcc, jrcxz,
 * loop) at at; calls are not jumps.
 */
bool ap_insn_branch(const struct insn *insn, unsigned long at, unsigned long *to)
{
	const u8 *op = insn->opcode.bytes;
	bool jump;

	if (insn->opcode.nbytes == 1)
		jump = op[0] == JMP32_INSN_OPCODE || op[0] == JMP8_INSN_OPCODE ||
		       (op[0] >= 0x70 && op[0] <= 0x7f) || (op[0] >= 0xe0 && op[0] <= 0xe3);
	else
		jump = insn->opcode.nbytes == 2 && op[0] == 0x0f && (op[1] & 0xf0) == JCC32_OPCODE;
	if (!jump || !insn->immediate.nbytes)
		return false;
	*to = at + insn->length + insn->immediate.value;
	return true;
}

/*
 * ap_insn_ends reports whether an instruction never falls through, so
 * that int3 may follow it as padding: ret, jmp, int3, iret, sysret.
 */
bool ap_insn_ends(const struct insn *insn)
{
	const u8 *op = insn->opcode.bytes;

	if (insn->opcode.nbytes == 2)
		return op[0] == 0x0f && (op[1] == 0x07 || op[1] == 0x35);
	switch (op[0]) {
	case RET_INSN_OPCODE: case 0xc2: case 0xca: case 0xcb: case 0xcf:
	case JMP32_INSN_OPCODE: case JMP8_INSN_OPCODE: case INT3_INSN_OPCODE:
		return true;
	case 0xff:
		return ap_modrm_reg(insn) == 4 || ap_modrm_reg(insn) == 5;
	}
	return false;
}

/* What an instruction does to the arithmetic flags, as splice/patch's FlagsDead has it. */
enum ap_flags {
	AP_FL_OTHER,	/* unknown: assume it reads them */
	AP_FL_NONE,	/* neither reads nor writes them */
	AP_FL_READ,
	AP_FL_ALL,	/* writes all six without reading any */
	AP_FL_NOCF,	/* writes all but CF (inc, dec) */
};

static enum ap_flags ap_flags_1(const struct insn *insn, u8 op)
{
	int reg = ap_modrm_reg(insn);

	if (op < 0x40 && (op & 7) < 6)
		return (op >> 3) == 2 || (op >> 3) == 3 ? AP_FL_READ : AP_FL_ALL;	/* adc, sbb */
	switch (op) {
	case 0x50 ... 0x5f: case 0x63: case 0x86 ... 0x8b: case 0x8d:
	case 0x90 ... 0x99: case 0xb0 ... 0xbf:
		return AP_FL_NONE;
	case 0x69: case 0x6b: case 0x84: case 0x85:
		return AP_FL_ALL;
	case 0x70 ... 0x7f: case 0x9c: case 0x9f:
		return AP_FL_READ;
	case 0x80: case 0x81: case 0x83:
		return reg == 2 || reg == 3 ? AP_FL_READ : AP_FL_ALL;
	case 0x8f: case 0xc6: case 0xc7:
		return reg == 0 ? AP_FL_NONE : AP_FL_OTHER;
	case 0xc0: case 0xc1:
		if (reg == 2 || reg == 3)
			return AP_FL_READ;
		return (reg == 4 || reg == 5 || reg == 7) && (insn->immediate.value & 0x3f) ?
			AP_FL_ALL : AP_FL_OTHER;
	case 0xd0: case 0xd1:
		if (reg == 2 || reg == 3)
			return AP_FL_READ;
		return reg == 4 || reg == 5 || reg == 7 ? AP_FL_ALL : AP_FL_OTHER;
	case 0xd2: case 0xd3:
		return reg == 2 || reg == 3 ? AP_FL_READ : AP_FL_OTHER;
	case 0xf6: case 0xf7:
		if (reg == 2)
			return AP_FL_NONE;
		return reg == 0 || (reg >= 3 && reg <= 5) ? AP_FL_ALL : AP_FL_OTHER;
	case 0xfe: case 0xff:
		if (reg < 2)
			return AP_FL_NOCF;
		return op == 0xff && reg == 6 ? AP_FL_NONE : AP_FL_OTHER;
	}
	return AP_FL_OTHER;
}

static enum ap_flags ap_flags_of(const struct insn *insn)
{
	const u8 *op = insn->opcode.bytes;

	if (insn->opcode.nbytes == 1)
		return ap_flags_1(insn, op[0]);
	if (insn->opcode.nbytes != 2 || op[0] != 0x0f)
		return AP_FL_OTHER;
	switch (op[1]) {
	case 0x0d:		/* prefetchw */
		return ap_modrm_reg(insn) == 1 ? AP_FL_NONE : AP_FL_OTHER;
	case 0x18:		/* prefetchnta, prefetcht0-2 */
		return ap_modrm_reg(insn) < 4 ? AP_FL_NONE : AP_FL_OTHER;
	case 0x1f: case 0xb6: case 0xb7: case 0xbe: case 0xbf: case 0xc8 ... 0xcf:
		return AP_FL_NONE;
	case 0x40 ... 0x4f: case 0x80 ... 0x9f:
		return AP_FL_READ;
	case 0xaf: case 0xb0: case 0xb1: case 0xc0: case 0xc1:
		return AP_FL_ALL;
	}
	return AP_FL_OTHER;
}

/*
 * ap_flags_dead reports whether the arithmetic flags are dead at a block
 * window: along the straight line from it (at most 16 instructions, up to
 * and including the first that is not a plain one), every flag is written
 * before any is read. Anything unknown makes them live.
 */
static bool ap_flags_dead(unsigned long at, unsigned long end)
{
	struct insn insn;
	int i;

	for (i = 0; i < 16 && at < end; i++) {
		if (ap_insn_decode(&insn, (void *)at, min_t(unsigned long, end - at, MAX_INSN_SIZE)))
			return false;
		switch (ap_flags_of(&insn)) {
		case AP_FL_NONE:
		case AP_FL_NOCF:	/* inc, dec leave CF: it may still be read */
			break;
		case AP_FL_ALL:
			return true;
		default:
			return false;
		}
		at += insn.length;
	}
	return false;
}

/*
 * The emitter: code for a trampoline at a known address, with forward
 * labels. Every branch has a 32-bit displacement, as in splice/patch.Asm.
 */
#define AP_LABELS (3 * AP_SITE_INSTS + 1)

struct ap_emit {
	u8 *buf;
	unsigned long at;	/* where buf[0] will run */
	unsigned int len;
	int err;
	int label[AP_LABELS];	/* offsets, -1 until placed */
	struct {
		u16 field;	/* where a rel32 to the label is */
		u8 label;
	} fix[AP_LABELS];
	int nfix;
};

static void ap_bytes(struct ap_emit *e, const void *p, unsigned int n)
{
	if (e->err)
		return;
	if (e->len + n > AP_SLOT_SIZE) {
		e->err = -E2BIG;
		return;
	}
	memcpy(e->buf + e->len, p, n);
	e->len += n;
}

static void ap_byte(struct ap_emit *e, u8 b)
{
	ap_bytes(e, &b, 1);
}

static void ap_le32(struct ap_emit *e, u32 v)
{
	ap_bytes(e, &v, sizeof(v));
}

/* ap_rel32 emits target's displacement from the end of the field. */
static void ap_rel32(struct ap_emit *e, unsigned long target)
{
	long d = (long)(target - (e->at + e->len + DISP32_SIZE));

	if (d != (s32)d && !e->err)
		e->err = -ERANGE;
	ap_le32(e, (u32)(s32)d);
}

static void ap_call(struct ap_emit *e, unsigned long target)
{
	ap_byte(e, CALL_INSN_OPCODE);
	ap_rel32(e, target);
}

static void ap_jmp(struct ap_emit *e, unsigned long target)
{
	ap_byte(e, JMP32_INSN_OPCODE);
	ap_rel32(e, target);
}

static void ap_place(struct ap_emit *e, int label)
{
	e->label[label] = e->len;
}

/* ap_to_label emits a rel32 to a label, resolved by ap_resolve. */
static void ap_to_label(struct ap_emit *e, int label)
{
	if (e->nfix == AP_LABELS) {
		e->err = e->err ?: -E2BIG;
		return;
	}
	e->fix[e->nfix].field = e->len;
	e->fix[e->nfix++].label = label;
	ap_le32(e, 0);
}

static void ap_jcc_label(struct ap_emit *e, u8 cc, int label)
{
	ap_byte(e, 0x0f);
	ap_byte(e, JCC32_OPCODE | cc);
	ap_to_label(e, label);
}

static void ap_jmp_label(struct ap_emit *e, int label)
{
	ap_byte(e, JMP32_INSN_OPCODE);
	ap_to_label(e, label);
}

static void ap_resolve(struct ap_emit *e)
{
	int i;

	for (i = 0; i < e->nfix && !e->err; i++) {
		int to = e->label[e->fix[i].label];
		s32 d = to - (e->fix[i].field + DISP32_SIZE);

		if (to < 0)
			e->err = -EINVAL;
		else
			memcpy(e->buf + e->fix[i].field, &d, sizeof(d));
	}
}

/* ap_call_stub emits "push %rdi; [mov $id, %edi;] call stub; pop %rdi". */
static void ap_call_stub(struct ap_emit *e, unsigned long stub, const u32 *id)
{
	ap_byte(e, PUSH_RDI);
	if (id) {
		ap_byte(e, MOV_EDI_IMM);
		ap_le32(e, *id);
	}
	ap_call(e, stub);
	ap_byte(e, POP_RDI);
}

/* Labels of counter i: where its fast path ends, after it, its slow path. */
#define L_DONE(i)	(3 * (i))
#define L_NEXT(i)	(3 * (i) + 1)
#define L_SLOW(i)	(3 * (i) + 2)
#define L_NOT		(3 * AP_SITE_INSTS)

/*
 * ap_count_fast emits counter i's fast path, which counts in the root
 * context with one per-CPU increment: when the current task is the one
 * the module marked as at the root context (ap_root_task) and passes a
 * one-process filter. Anything else goes to the slow path.
 */
static void ap_count_fast(struct ap_emit *e, int i, const struct ap_inst *in, bool flags)
{
	u64 slot = (u64)(unsigned long)(ap_fast + in->fast);	/* a __percpu address is its %gs offset */
	static const u8 load_cur[] = { 0x65, 0x48, 0x8b, 0x04, 0x25 };	/* mov %gs:off32, %rax */
	static const u8 cmp_root[] = { 0x65, 0x48, 0x3b, 0x04, 0x25 };	/* cmp %gs:off32, %rax */
	static const u8 cmp_tgid[] = { 0x81, 0xb8 };			/* cmpl $imm32, off32(%rax) */
	static const u8 inc_gs[] = { 0x65, 0x48, 0xff, 0x00 };		/* incq %gs:(%rax) */

	if (flags)
		ap_byte(e, PUSHF);
	ap_byte(e, PUSH_RAX);
	ap_bytes(e, load_cur, sizeof(load_cur));
	ap_le32(e, (u32)ap_gs_current_off());
	if (in->npids == 1) {
		ap_bytes(e, cmp_tgid, sizeof(cmp_tgid));
		ap_le32(e, offsetof(struct task_struct, tgid));
		ap_le32(e, in->pids[0]);
		ap_jcc_label(e, CC_NE, L_DONE(i));
	}
	ap_bytes(e, cmp_root, sizeof(cmp_root));
	ap_le32(e, (u32)(unsigned long)&ap_root_task);
	ap_jcc_label(e, CC_NE, L_SLOW(i));
	ap_byte(e, 0x48);	/* movabs $slot, %rax */
	ap_byte(e, 0xb8);
	ap_bytes(e, &slot, sizeof(slot));
	ap_bytes(e, inc_gs, sizeof(inc_gs));
	ap_place(e, L_DONE(i));
	ap_byte(e, POP_RAX);
	if (flags)
		ap_byte(e, POPF);
	ap_place(e, L_NEXT(i));
}

/* ap_count_stub returns the stub a counter calls: the _flags one where the flags are live. */
static unsigned long ap_count_stub(bool flags)
{
	return flags ? (unsigned long)ap_stub_count_flags : (unsigned long)ap_stub_count;
}

/* ap_count_slow emits counter i's slow path, after the body. */
static void ap_count_slow(struct ap_emit *e, int i, const struct ap_inst *in, bool flags)
{
	ap_place(e, L_SLOW(i));
	ap_byte(e, POP_RAX);
	if (flags)
		ap_byte(e, POPF);
	ap_call_stub(e, ap_count_stub(flags), &in->id);
	ap_jmp_label(e, L_NEXT(i));
}

static bool ap_has_fast(const struct ap_inst *in)
{
	return in->kind == AP_COUNT && in->npids <= 1 && ap_fast_path && in->fast != AP_NONE;
}

/* ap_relocate emits a displaced instruction that was at from. */
static void ap_relocate(struct ap_emit *e, const struct insn *insn, const u8 *code, unsigned long from)
{
	u8 buf[MAX_INSN_SIZE];
	int off;
	s32 disp;
	long d;

	memcpy(buf, code, insn->length);
	if (insn->modrm.nbytes && X86_MODRM_MOD(insn->modrm.value) == 0 &&
	    X86_MODRM_RM(insn->modrm.value) == 5) {
		/* RIP-relative: the same absolute address from the trampoline. */
		off = insn_offset_displacement((struct insn *)insn);
		d = (long)(from + insn->length + insn->displacement.value) -
		    (long)(e->at + e->len + insn->length);
		if (d != (s32)d) {
			e->err = e->err ?: -ERANGE;
			return;
		}
		disp = d;
		memcpy(buf + off, &disp, sizeof(disp));
	}
	ap_bytes(e, buf, insn->length);
}

/*
 * ap_body emits the displaced instructions of a block or entry window and
 * the jump back; each must be movable.
 */
static void ap_body(struct ap_emit *e, const struct ap_splice *sp)
{
	unsigned int off = 0;
	struct insn insn;

	while (off < sp->len && !e->err) {
		if (ap_insn_decode(&insn, sp->orig + off, sp->len - off) ||
		    !ap_insn_movable(&insn)) {
			e->err = -ENOEXEC;	/* an instruction that cannot run displaced */
			return;
		}
		ap_relocate(e, &insn, sp->orig + off, sp->addr + off);
		off += insn.length;
	}
	ap_jmp(e, sp->addr + sp->len);
	ap_byte(e, INT3_INSN_OPCODE);
}

/* ap_return emits a return window's trampoline (see the top of this file). */
static void ap_return(struct ap_emit *e, const struct ap_splice *sp, const struct ap_window *w,
		      bool flags)
{
	if (w->form == AP_RET_TAIL_CC)
		ap_jcc_label(e, w->cc ^ 1, L_NOT);
	ap_call_stub(e, flags ? (unsigned long)ap_stub_exit_flags : (unsigned long)ap_stub_exit, NULL);
	if (w->form == AP_RET_PLAIN)
		ap_byte(e, RET_INSN_OPCODE);
	else
		ap_jmp(e, w->target);
	ap_byte(e, INT3_INSN_OPCODE);
	if (w->form == AP_RET_TAIL_CC) {
		ap_place(e, L_NOT);
		ap_jmp(e, sp->addr + sp->len);
		ap_byte(e, INT3_INSN_OPCODE);
	}
}

/*
 * ap_build writes into buf the trampoline of splice sp (checked by
 * ap_check_site, which filled w) for the slot at at; insts are its
 * instruments, in order. It returns the trampoline's length or an error,
 * and sets AP_O_FLAGS in out where the flags must be saved.
 */
int ap_build(u8 *buf, unsigned long at, const struct ap_splice *sp,
	     const struct ap_window *w, const struct ap_inst **insts, u8 *out)
{
	struct ap_emit e = { .buf = buf, .at = at };
	bool flags = false;
	u32 i;

	memset(e.label, -1, sizeof(e.label));
	memset(buf, INT3_INSN_OPCODE, AP_SLOT_SIZE);
	*out = 0;
	if (sp->role == AP_RETURN)
		flags = !w->entry;
	else if (sp->role == AP_BLOCK)
		flags = !ap_flags_dead(sp->addr, w->func + w->size);
	if (flags)
		*out |= AP_O_FLAGS;
	if (sp->role == AP_RETURN) {
		ap_return(&e, sp, w, flags);
		goto done;
	}
	for (i = 0; i < sp->ninst; i++) {
		const struct ap_inst *in = insts[i];

		if (ap_has_fast(in))
			ap_count_fast(&e, i, in, flags);
		else if (in->kind == AP_COUNT)
			ap_call_stub(&e, ap_count_stub(flags), &in->id);
		else
			ap_call_stub(&e, (unsigned long)ap_stub_enter, &in->id);
	}
	ap_body(&e, sp);
	for (i = 0; i < sp->ninst; i++)
		if (ap_has_fast(insts[i]))
			ap_count_slow(&e, i, insts[i], flags);
done:
	ap_resolve(&e);
	return e.err ?: e.len;
}

/* ap_tramp_init decides whether the counters' fast path can be encoded here. */
void ap_tramp_init(void)
{
	unsigned long cur = ap_gs_current_off(), root = (unsigned long)&ap_root_task;

	ap_fast_path = cur == (s32)cur && root == (s32)root &&
		       offsetof(struct task_struct, tgid) <= S32_MAX;
}
