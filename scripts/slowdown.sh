#!/bin/bash
# slowdown.sh: the slowdown of a dd workload alone, under perf stat -e
# raw_syscalls:*, under perf record -g and under autoprof hunt, twice in
# turn (docs/overhead.md). Run as root from the repository after make
# build: BS=4k N=3000000 scripts/slowdown.sh
set -u
N=${N:-3000000}
BS=${BS:-4k}
AP=${AP:-bin/autoprof}
OUT=${OUT:-/tmp/autoprof-slowdown}
mkdir -p "$OUT"
DD="dd if=/dev/zero of=/dev/null bs=$BS count=$N"

run() { # label, command...
	local label=$1
	shift
	local t0 t1 out
	t0=$(date +%s.%N)
	out=$({ /usr/bin/time -f "CPU %U user %S sys" "$@"; } 2>&1)
	t1=$(date +%s.%N)
	echo "$label | wall $(echo "$t1 - $t0" | bc) s | dd: $(echo "$out" | grep -o '[0-9.]* [GM]B/s' | tail -1) | $(echo "$out" | grep '^CPU' | tail -1)"
}

for i in 1 2; do
	run "alone" $DD
	run "perf stat raw_syscalls" perf stat -o "$OUT/perf-stat.txt" -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -- $DD
	run "perf record -g" perf record -q -g -o "$OUT/perf.data" -- $DD
	run "autoprof hunt" "$AP" hunt --recalibrate -o "$OUT/hunt" -- $DD
	grep -E 'slower|calibrated cost|compensated:' "$OUT/hunt/report.txt" | sed 's/^/    /'
done
echo "perf's hottest kernel functions (self):"
perf report -i "$OUT/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep '\[k\]' | head -5
echo "the hunt's findings:"
grep -E '^ [0-9]\. ' "$OUT/hunt/report.txt" | head -5
