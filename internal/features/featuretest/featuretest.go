// Package featuretest decides whether a test that needs a kernel feature
// skips or fails where the feature does not work: cilium/ebpf's
// testutils.SkipOnOldKernel pattern, for the two kinds of kernel autoprof's
// tests run on.
//
// On the host the kernel is whatever runs the tests, and a locked-down one
// may lack kprobes, fentry or modules: a test that needs one skips there,
// with the reason the probe in package features gives. In the test VM
// (internal/vmtest, whose init sets guest.VMEnv) the kernels are Debian's
// stock 6.1 and 6.12, which have every feature autoprof probes for: there
// the same test fails, so that a broken probe, or a program the verifier
// rejects, cannot pass for a skip.
//
// A test asks the probe first and then treats a failure of the real
// operation as a failure:
//
//	featuretest.Require(t, features.HaveFentry())
//	s, err := splice.Open(ctx, splice.Options{Backend: "fentry"})
//	if err != nil {
//		t.Fatal(err) // fentry works here: Open must too
//	}
package featuretest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/internal/vmtest/guest"
)

// InVM reports whether the test runs in autoprof's test VM, on one of its
// known kernels.
func InVM() bool { return os.Getenv(guest.VMEnv) != "" }

// Require skips tb with the first non-nil error of errs, each the answer of
// a probe (features.HaveFentry()) or of an operation that needs nothing
// but what a stock kernel has; nil errors are features that work. In the
// test VM it fails tb instead: the kernel there has them all.
func Require(tb testing.TB, errs ...error) {
	tb.Helper()
	for _, err := range errs {
		if err == nil {
			continue
		}
		if InVM() {
			tb.Fatalf("%v (the test VM's kernel has this: required there)", err)
		}
		tb.Skip(err)
	}
}

// RequireAny is Require for features that stand in for each other (the
// kcore and bpf-read text readers): it skips, or fails in the test VM, only
// where every one of errs is non-nil, with all their reasons.
func RequireAny(tb testing.TB, errs ...error) {
	tb.Helper()
	var reasons []string
	for _, err := range errs {
		if err == nil {
			return
		}
		reasons = append(reasons, err.Error())
	}
	if len(reasons) > 0 {
		Require(tb, errors.New(strings.Join(reasons, "; ")))
	}
}

// SkipOnOldKernel skips tb where the running kernel is older than
// minVersion ("6.9"), the version that added feature, and returns
// otherwise. Call it where a test has found feature missing, and fail the
// test after it: on a kernel as new as minVersion the feature must be
// there. A release that cannot be read or parsed fails tb.
func SkipOnOldKernel(tb testing.TB, minVersion, feature string) {
	tb.Helper()
	release, err := kernel.Release()
	if err != nil {
		tb.Fatal(err)
	}
	old, err := olderThan(release, minVersion)
	if err != nil {
		tb.Fatal(err)
	}
	if old {
		tb.Skipf("kernel %s is older than %s, which added %s", release, minVersion, feature)
	}
}

// olderThan reports whether the kernel release ("6.1.0-57-amd64") is older
// than version ("6.9", "5.10.2"), comparing as many numbers as version has.
func olderThan(release, version string) (bool, error) {
	want, err := versionNumbers(version)
	if err != nil {
		return false, err
	}
	have, err := versionNumbers(releaseVersion(release))
	if err != nil {
		return false, fmt.Errorf("kernel release %q: %w", release, err)
	}
	for i, w := range want {
		h := 0
		if i < len(have) {
			h = have[i]
		}
		if h != w {
			return h < w, nil
		}
	}
	return false, nil
}

// releaseVersion cuts a release down to its leading dotted numbers:
// "6.12.57+deb13-amd64" is "6.12.57".
func releaseVersion(release string) string {
	end := strings.IndexFunc(release, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end < 0 {
		end = len(release)
	}
	return strings.TrimRight(release[:end], ".")
}

func versionNumbers(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ".") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("version %q: %w", v, err)
		}
		out = append(out, n)
	}
	return out, nil
}
