package featuretest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/vmtest/guest"
)

// recorder is a testing.TB that records how a test would have ended.
type recorder struct {
	testing.TB
	ended string // "skip: ...", "fatal: ..." or "" where the test goes on
}

func (r *recorder) Helper() {}

func (r *recorder) Skip(args ...any) { r.end("skip: " + fmt.Sprint(args...)) }

func (r *recorder) Skipf(format string, args ...any) { r.end("skip: " + fmt.Sprintf(format, args...)) }

func (r *recorder) Fatal(args ...any) { r.end("fatal: " + fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.end("fatal: " + fmt.Sprintf(format, args...))
}

// end stops the calling goroutine, as the real Skip and Fatal do.
func (r *recorder) end(how string) {
	r.ended = how
	runtime.Goexit()
}

// ending runs f with a recorder and returns how it ended.
func ending(t *testing.T, f func(tb testing.TB)) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.ended
}

func TestRequire(t *testing.T) {
	missing := errors.New("kprobe unavailable: CONFIG_KPROBES is not set")
	for _, c := range []struct {
		vm   string
		errs []error
		want string
	}{
		{"", nil, ""},
		{"", []error{nil, nil}, ""},
		{"", []error{nil, missing}, "skip: " + missing.Error()},
		{"1", []error{nil}, ""},
		{"1", []error{missing, nil}, "fatal: " + missing.Error() + " (the test VM's kernel has this: required there)"},
	} {
		t.Setenv(guest.VMEnv, c.vm)
		if got := ending(t, func(tb testing.TB) { Require(tb, c.errs...) }); got != c.want {
			t.Errorf("%s=%q, Require(%v) ended %q, want %q", guest.VMEnv, c.vm, c.errs, got, c.want)
		}
	}
}

func TestRequireAny(t *testing.T) {
	kcore, bpf := errors.New("no /proc/kcore"), errors.New("bpf-read refused")
	for _, c := range []struct {
		vm   string
		errs []error
		want string
	}{
		{"", nil, ""},
		{"", []error{kcore, nil}, ""},
		{"1", []error{nil, bpf}, ""},
		{"", []error{kcore, bpf}, "skip: no /proc/kcore; bpf-read refused"},
		{"1", []error{kcore, bpf}, "fatal: no /proc/kcore; bpf-read refused (the test VM's kernel has this: required there)"},
	} {
		t.Setenv(guest.VMEnv, c.vm)
		if got := ending(t, func(tb testing.TB) { RequireAny(tb, c.errs...) }); got != c.want {
			t.Errorf("%s=%q, RequireAny(%v) ended %q, want %q", guest.VMEnv, c.vm, c.errs, got, c.want)
		}
	}
}

func TestOlderThan(t *testing.T) {
	for _, c := range []struct {
		release, version string
		want             bool
	}{
		{"6.1.0-57-amd64", "6.9", true},
		{"6.12.57+deb13-amd64", "6.9", false},
		{"6.9.0", "6.9", false},
		{"6.9", "6.9.1", true},
		{"5.10.0-35-amd64", "5.5", false},
		{"4.19.0", "5.5", true},
		{"6.18.44-fc-v1272", "6.9", false},
		{"10.0.0", "9.12", false},
	} {
		got, err := olderThan(c.release, c.version)
		if err != nil || got != c.want {
			t.Errorf("olderThan(%q, %q) = %v, %v; want %v", c.release, c.version, got, err, c.want)
		}
	}
	for _, bad := range [][2]string{{"generic", "6.9"}, {"6.1.0", "six"}} {
		if _, err := olderThan(bad[0], bad[1]); err == nil {
			t.Errorf("olderThan(%q, %q): no error", bad[0], bad[1])
		}
	}
}

// TestSkipOnOldKernel: the running kernel is not older than version 1, and
// older than version 1000.
func TestSkipOnOldKernel(t *testing.T) {
	if got := ending(t, func(tb testing.TB) { SkipOnOldKernel(tb, "1", "everything") }); got != "" {
		t.Errorf("version 1: %s", got)
	}
	got := ending(t, func(tb testing.TB) { SkipOnOldKernel(tb, "1000", "the future") })
	if !strings.HasPrefix(got, "skip: kernel ") {
		t.Errorf("version 1000: ended %q, want a skip", got)
	}
}
