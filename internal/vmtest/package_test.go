package vmtest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAddHostTool: a host tool goes to /usr/bin with its shared libraries
// and the dynamic loader at the paths ldd names; a tool the host lacks is
// an error that names it.
func TestAddHostTool(t *testing.T) {
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Fatalf("objdump (binutils, a dependency of the tests: scripts/deps.sh) is missing: %v", err)
	}
	r := NewInitramfs()
	if err := r.addHostTool("objdump"); err != nil {
		t.Fatal(err)
	}
	var loader, libc bool
	for name, f := range r.files {
		loader = loader || strings.Contains(name, "ld-linux")
		libc = libc || strings.Contains(name, "libc.so")
		if f.host == "" || strings.HasPrefix(name, "/") {
			t.Errorf("%q: from %q", name, f.host)
		}
	}
	if _, ok := r.files["usr/bin/objdump"]; !ok || !loader || !libc {
		t.Errorf("objdump at usr/bin %v, a loader %v, libc %v: %v", ok, loader, libc, r.files)
	}
	err := NewInitramfs().addHostTool("no-such-tool-autoprof")
	if err == nil || !strings.Contains(err.Error(), "no-such-tool-autoprof") {
		t.Errorf("a missing tool: %v", err)
	}
}
