// Package patch is autoprof's x86-64 code splicer, in pure Go: it chooses
// where a jump can replace kernel code, relocates the instructions the jump
// displaces, and encodes the trampoline the jump goes to. It never touches
// the kernel; the splice module (kmod/splicer) writes what it builds.
//
// A splice replaces a window of whole instructions, at least 5 bytes long,
// at a site with "jmp trampoline". The trampoline runs the instrument, then
// the displaced instructions (relocated: RIP-relative displacements
// rewritten, with a signed 32-bit range check), then jumps back to the end
// of the window.
//
// SelectWindow enforces every placement rule of ../../shared/SAFETY.md that
// can be decided from the function's code and the kernel's tables: whole
// instructions from a linear decode, a whole-function scan for indirect
// jumps and for direct branches into the window (its .cold parts
// included), exception-table entries, text other patchers own (the ftrace
// site, alternatives, jump labels, static calls, paravirt sites, ENDBR,
// kprobes' int3), and the end of the function. Blacklists by name or
// section are the caller's (package splice).
//
// Build encodes a trampoline from a short symbolic instruction list (see
// Asm), resolved in one encode step into bytes and the relocations the
// module applies once it knows where the trampoline lies.
package patch
