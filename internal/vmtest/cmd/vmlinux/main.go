// Command vmlinux writes the ELF vmlinux inside a kernel image (a bzImage
// vmlinuz, decompressed as scripts/extract-vmlinux does):
//
//	go run ./internal/vmtest/cmd/vmlinux VMLINUZ OUT
//
// An OUT newer than VMLINUZ is left as it is. The VM tests' prepare steps
// use it as the base BTF that pahole gives an
// out-of-tree test module its own BTF against, where the kernel's headers
// package ships no vmlinux (Debian's 6.1).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/autoprof/autoprof/callgraph"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: vmlinux VMLINUZ OUT")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "vmlinux: %v\n", err)
		os.Exit(1)
	}
}

func run(image, out string) error {
	if in, err := os.Stat(image); err == nil {
		if o, err := os.Stat(out); err == nil && !o.ModTime().Before(in.ModTime()) {
			return nil // written from this image already
		}
	}
	data, err := os.ReadFile(image)
	if err != nil {
		return err
	}
	elf, err := callgraph.VmlinuxFromImage(data)
	if err != nil {
		return fmt.Errorf("%s: %w", image, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+"-*.tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(elf); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), out)
}
