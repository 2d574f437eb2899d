// Package boot names the running boot of the kernel, and keeps on disk
// what autoprof reads of the kernel once per boot (Cache), keyed by it.
// It reads files only, so that pure packages (callgraph) may use it.
package boot

import (
	"fmt"
	"os"
	"strings"
)

// ID returns the kernel's random boot id (a new one at every boot):
// the key of what autoprof keeps on disk for the rest of a boot.
func ID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading the boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("reading the boot id: /proc/sys/kernel/random/boot_id is empty")
	}
	return id, nil
}
