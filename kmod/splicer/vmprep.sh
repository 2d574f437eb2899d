#!/bin/sh
# vmprep.sh: run by vmtest before a VM boots (vmtest.json "prepare"), with
# KERNEL_BUILD and KERNEL_RELEASE set: builds the module for the guest
# kernel and copies that kernel's vmlinuz beside it, for the placement
# rules that read its alternatives table.
set -eu
cd "$(dirname "$0")"
make -s KDIR="$KERNEL_BUILD" RELEASE="$KERNEL_RELEASE"
# KERNEL_BUILD is CACHE/headers/RELEASE_VERSION/usr/src/linux-headers-RELEASE;
# the image is CACHE/kernels/linux-image-RELEASE_VERSION/boot/vmlinuz-RELEASE.
pkg=$(dirname "$(dirname "$(dirname "$KERNEL_BUILD")")")
cache=$(dirname "$(dirname "$pkg")")
image="$cache/kernels/linux-image-$(basename "$pkg")/boot/vmlinuz-$KERNEL_RELEASE"
cp -p "$image" "build/$KERNEL_RELEASE/vmlinuz"
