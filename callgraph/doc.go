// Package callgraph is autoprof's map of the kernel: symbols from
// /proc/kallsyms, a System.map or the symbol table compiled into a kernel
// image; readers of kernel text; x86-64 decoding into instructions, basic
// blocks and call sites; and the static call graph the search walks.
//
// # Symbols
//
// ParseKallsyms and ParseSystemMap build a Symbols table; Image.Symbols
// reads the kallsyms tables compiled into a vmlinuz (Debian ships a
// placeholder System.map). A function's extent runs to the next symbol in
// its text: a __pfx_ or __cfi_ padding symbol ends the function before it,
// aliases share one extent, ".cold" parts are functions of their own that
// name their Parent, and the core kernel's text ends at _etext. Init text
// is freed after boot and is not text here.
//
// # Text
//
// A Text reads kernel memory. Live text (/proc/kcore, else the BPF reader
// of package kmod/textread; package callgraph/livetext opens the one this
// machine allows) is the code that runs: alternatives, static keys and
// static calls are applied, ftrace has turned the calls to __fentry__ into
// 5-byte nops, unused ENDBR64s are sealed, and any ftrace, BPF or kprobe
// patch active at the time shows. Offline text (OpenImage,
// OpenOfflineText) is the image as built: calls to __fentry__, unpatched
// alternatives, retpoline thunks, static-call trampolines with their
// build-time targets.
//
// # Decoding
//
// Decode sweeps a function linearly from its start with
// golang.org/x/arch/x86/x86asm, as objdump does, completed by a short list
// of exact encodings x86asm lacks (ENDBR64, CLAC/STAC, VMX/SVM entry
// points, ...). Bytes that cannot be decoded are reported as a Problem; the
// sweep resumes only at a known branch target, never at a guessed offset.
// Basic blocks, branch targets, returns (ret and jmps to return thunks),
// tail calls, calls through retpoline thunks and static-call trampolines,
// indirect operands and candidate instrument points follow from the
// instructions. A Graph adds what needs kernel memory: jump tables and, on
// live text, the current targets of static calls.
//
// docs/callgraph.md gives the rules in full and the figures of the
// differential tests against objdump.
package callgraph
