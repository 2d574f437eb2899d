#!/usr/bin/env bash
# Installs the Debian packages autoprof's build, tests and VM need, where
# they are missing. With "generate", also the pinned BPF toolchain.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need+=(qemu-system-x86)
have objdump || need+=(binutils)
have dpkg-deb || need+=(dpkg)
# Test kernel modules are built against Debian's headers for the VM kernels.
have make || need+=(make)
have gcc-12 || need+=(gcc-12)
have pahole || need+=(dwarves)
# The HTML report is checked in headless Chromium.
[ -x /usr/bin/chromium ] || need+=(chromium)
have apt-get || { echo "deps: apt-get is missing: autoprof's tests need a Debian or Ubuntu machine" >&2; exit 1; }
if [ "${1:-}" = generate ]; then
	have clang-14 || need+=(clang-14)
	have llvm-strip || need+=(llvm)
	[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	echo "deps: installing ${need[*]}"
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# Kernel packages are resolved through apt's index: refresh it if it does
# not know the 6.12 series yet.
if ! apt-cache show linux-image-6.12-amd64 >/dev/null 2>&1; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -q
fi
