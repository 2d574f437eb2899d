// Package debuginfo finds the kernel's and its modules' debug
// information (DWARF) by GNU build ID, as perf's build-ID cache and
// pprof's PPROF_BINARY_PATH do, and turns addresses in the running
// kernel into source lines: what a profile needs for go tool pprof's
// -list and a person for "which line".
//
// A module's .ko is a relocatable file: its sections all start at 0, and
// the running kernel puts each somewhere else (/sys/module/M/sections/).
// Open moves each section's symbols to its address before debug/elf
// applies the DWARF's relocations, so that the line tables hold running
// addresses and the sections' code does not overlap there.
package debuginfo
