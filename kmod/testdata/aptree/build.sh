#!/bin/sh
# build.sh: run by vmtest before a VM boots (vmtest.json "prepare"), with
# KERNEL_BUILD and KERNEL_RELEASE set: generates the aptree module of the
# truth trees (internal/calltree, seeds ${APTREE_SEEDS:-1-20}) and builds
# it against the guest kernel's headers, in build/RELEASE/.
set -eu
cd "$(dirname "$0")/../../.."
out="$PWD/kmod/testdata/aptree/build/$KERNEL_RELEASE"
go run ./internal/calltree/cmd/gentree -seeds "${APTREE_SEEDS:-1-20}" -o "$out"
cc=$(command -v gcc-12 || command -v gcc)
make -s -C "$KERNEL_BUILD" M="$out" CC="$cc" modules
