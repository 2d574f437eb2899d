package debkernel

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseShow(t *testing.T) {
	show := "Package: linux-image-6.1.0-56-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\nSHA256: a86e2049\nSize: 70550672\n"
	p, err := parseShow("linux-image-6.1.0-56-amd64", show)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != "6.1.192-2" || p.SHA256 != "a86e2049" {
		t.Fatalf("parsed %+v", p)
	}
	k := p.kernel("/c", "6.1")
	if k.Release != "6.1.0-56-amd64" || k.Vmlinuz != "/c/linux-image-6.1.0-56-amd64_6.1.192-2/boot/vmlinuz-6.1.0-56-amd64" {
		t.Fatalf("kernel paths %+v", k)
	}
	if _, err := parseShow("x", "Package: x\n"); err == nil {
		t.Fatal("parseShow accepted a record without Version/SHA256")
	}
}

func TestLessVersion(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"6.1", "6.12", true},
		{"6.12", "6.1", false},
		{"6.1.192-2", "6.1.192-10", true},
		{"6.12.117-1~deb12u1", "6.12.117-1~deb12u2", true},
		{"6.1", "6.1", false},
	} {
		if got := lessVersion(c.a, c.b); got != c.less {
			t.Errorf("lessVersion(%q, %q) = %v", c.a, c.b, got)
		}
	}
	if got := strings.Join(SeriesNames(), ","); got != "6.1,6.12" {
		t.Errorf("SeriesNames = %s", got)
	}
}

func TestVerifyBootFiles(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	os.WriteFile(filepath.Join(root, "boot", "vmlinuz-x"), []byte("hello\n"), 0o644)
	sums := filepath.Join(root, "md5sums")
	// md5("hello\n") = b1946ac92492d2347c6235b4d2611184
	os.WriteFile(sums, []byte("b1946ac92492d2347c6235b4d2611184  boot/vmlinuz-x\n0000  lib/other\n"), 0o644)
	if err := verifyBootFiles(root, sums); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "boot", "vmlinuz-x"), []byte("hellp\n"), 0o644)
	if err := verifyBootFiles(root, sums); err == nil {
		t.Fatal("a changed boot file passed verification")
	}
}

func TestFetchUnknownSeries(t *testing.T) {
	if _, err := Fetch(context.Background(), "2.6"); err == nil || !strings.Contains(err.Error(), `"2.6"`) {
		t.Fatalf("Fetch(2.6) = %v, want an error naming the series", err)
	}
}

// TestFetch downloads (or finds cached) the real 6.1 package.
func TestFetch(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches a Debian kernel package: not in -short mode")
	}
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("apt-cache is missing: not a Debian machine")
	}
	k, err := Fetch(context.Background(), "6.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{k.Vmlinuz, k.SystemMap, k.Config, k.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if !strings.HasPrefix(k.Release, "6.1.") {
		t.Errorf("release %q is not of series 6.1", k.Release)
	}
}

// TestHeaders fetches the 6.1 headers and builds a module against them.
func TestHeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches Debian packages and builds a module: not in -short mode")
	}
	for _, tool := range []string{"apt-cache", "make", "gcc-12"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (run make deps)", tool)
		}
	}
	k, err := Fetch(context.Background(), "6.1")
	if err != nil {
		t.Fatal(err)
	}
	build, err := Headers(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Kbuild"), []byte("obj-m := hello.o\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "hello.c"), []byte("#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n"), 0o644)
	out, err := exec.Command("make", "-s", "-C", build, "M="+dir, "modules").CombinedOutput()
	if err != nil {
		t.Fatalf("building a module: %v\n%s", err, out)
	}
	ko, err := os.ReadFile(filepath.Join(dir, "hello.ko"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ko), "vermagic="+k.Release+" ") {
		t.Errorf("hello.ko has no vermagic for %s", k.Release)
	}
}
