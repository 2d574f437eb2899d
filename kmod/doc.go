// Package kmod holds everything autoprof runs inside the kernel, with its
// loaders: BPF programs (C beside their Go loaders, built with bpf2go, the
// generated objects committed) and the splicing kernel module.
package kmod
