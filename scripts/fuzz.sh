#!/usr/bin/env bash
# Runs every Go fuzz target of the module for a short time (default 15s).
set -euo pipefail
fuzztime=${1:-15s}
found=0
while IFS= read -r file; do
	dir=$(dirname "$file")
	for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
		found=1
		echo "fuzz: ./$dir $target ($fuzztime)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime=2s "./$dir"
	done
done < <(git ls-files '*_test.go')
[ "$found" = 1 ] || echo "fuzz: no fuzz targets"
