#!/usr/bin/env bash
# install-nvrtc.sh: install Debian's NVRTC (the CUDA runtime compiler) so that
# the cuda package's tests can compile every embedded kernel without a GPU.
#
# NVRTC lives in Debian's non-free component, which the base image does not
# enable. We add it in a file of our own (never editing the image's
# debian.sources) so that the change is easy to see and to undo. The script is
# idempotent and non-interactive: run it as many times as you like.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
pkgs=(libnvrtc11.2 libnvrtc-builtins11.8)

have_all() {
	local p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
	done
}

if have_all; then
	echo "install-nvrtc: ${pkgs[*]} already installed"
	exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
	sudo="sudo"
fi

src=/etc/apt/sources.list.d/offload-nonfree.sources
if [ -d /etc/apt/sources.list.d ] && ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
	# deb822 format, like the image's debian.sources.
	want='Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
else
	src=/etc/apt/sources.list.d/offload-nonfree.list
	want='deb http://deb.debian.org/debian bookworm non-free'
fi
if [ ! -f "$src" ] || [ "$(cat "$src")" != "$want" ]; then
	printf '%s\n' "$want" | $sudo tee "$src" >/dev/null
	echo "install-nvrtc: wrote $src"
fi

$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
have_all
echo "install-nvrtc: installed ${pkgs[*]}"
