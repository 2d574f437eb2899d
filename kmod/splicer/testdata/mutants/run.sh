#!/bin/sh
# run.sh [PATCH...]: each mutant here undoes one of issue 14's fixes in the
# splicing module. For each (default: all), apply it to a scratch worktree
# of HEAD and run the VM tests its header names on both kernels
# (KERNELS=6.1,6.12), -short; say whether the tests caught it (failed).
# make mutants runs it; it needs bin/vmtest (make build).
set -eu
root=$(git rev-parse --show-toplevel)
vmtest=$root/bin/vmtest
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/w" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
git -C "$root" worktree add -q --detach "$tmp/w" HEAD
[ $# -gt 0 ] || set -- "$root"/kmod/splicer/testdata/mutants/*.patch
for p in "$@"; do
	pkg=$(sed -n 's/^# package: //p' "$p")
	tests=$(sed -n 's/^# tests: //p' "$p")
	git -C "$tmp/w" checkout -q -- .
	git -C "$tmp/w" apply "$p"
	if (cd "$tmp/w" && "$vmtest" test -short -kernels "${KERNELS:-6.1,6.12}" -run "$tests" "./$pkg") >"$tmp/log" 2>&1; then
		echo "NOT CAUGHT $(basename "$p"): $tests passed"
	else
		echo "caught     $(basename "$p"): $(grep -E '^(ok|FAIL) +kernel' "$tmp/log" | awk '{print $1, $3}' | tr '\n' ';') $(grep -E '^ +FAIL ' "$tmp/log" | sort -u | head -3 | tr -s ' ' | tr '\n' ';')"
	fi
done
