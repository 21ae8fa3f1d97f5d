#!/usr/bin/env bash
# Idempotent set-up for a Debian/Ubuntu host: installs what is missing, leaves
# what is already right alone, and says what it does.
#   scripts/setup.sh          runtime: BCC, kernel headers, venv with inotrace
#   scripts/setup.sh --test   also the test tools (pytest, promtool, inotify-tools)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs distribution packages and loads BPF)"
command -v apt-get >/dev/null || die "needs apt-get (Debian/Ubuntu); elsewhere install BCC's Python module and kernel headers by hand"

# --- distribution packages ---------------------------------------------------
# BCC comes from the distribution: PyPI's "bcc" is an unrelated library.
pkgs=(python3-bpfcc bpfcc-tools python3-venv)
[ $want_test = 1 ] && pkgs+=(prometheus inotify-tools gcc libc6-dev bpftool liburing-dev bpftrace python3-yaml systemd openssl curl tmux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { say "apt-get update"; apt-get update -q >/dev/null; apt_updated=1; }; }
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
  say "distribution packages present: ${pkgs[*]}"
fi
# Debian's prometheus package enables a server on :9090; tests start their own.
if [ $want_test = 1 ] && command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  say "stopping the distribution's prometheus service (tests run their own on loopback)"
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

# --- kernel headers for BCC ----------------------------------------------------
kver=$(uname -r)
build=/lib/modules/$kver/build
if [ -e "$build/include/generated" ] || [ -e "$build/Makefile" ]; then
  say "kernel headers: $build present"
else
  apt_update
  if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
    say "kernel headers: installing linux-headers-$kver (exact match for this kernel)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "linux-headers-$kver" >/dev/null
  else
    arch=$(dpkg --print-architecture)
    say "kernel headers: the distribution has none for $kver; using generic linux-headers-$arch"
    say "  (BCC only needs them to compile; inotrace reads kernel structs at offsets from BTF, never from these headers)"
    dpkg-query -W -f='${Status}' "linux-headers-$arch" 2>/dev/null | grep -q "install ok installed" ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "linux-headers-$arch" >/dev/null
    gen=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n1)
    common=${gen%-"$arch"}-common
    [ -d "$gen" ] && [ -d "$common" ] || die "generic headers not found under /usr/src"
    mkdir -p "/lib/modules/$kver"
    ln -sfn "$gen" "/lib/modules/$kver/build"
    ln -sfn "$common" "/lib/modules/$kver/source"
    say "kernel headers: linked /lib/modules/$kver/build -> $gen, source -> $common"
  fi
fi

# --- virtual environment -----------------------------------------------------
# Made from the distribution's python3 with --system-site-packages: that is
# where python3-bpfcc puts the bcc module.
venv=.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import bcc; bcc.BPF" >/dev/null 2>&1; then
  rm -rf "$venv"
  say "creating $venv from /usr/bin/python3 --system-site-packages"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
extra=""
[ $want_test = 1 ] && extra="[test]"
stamp="$venv/.installed$extra"
sum=$(sha256sum pyproject.toml | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
  say "python packages up to date in $venv"
else
  say "installing inotrace$extra into $venv (editable)"
  # (this machine's pip.conf names local indexes that may be absent: hide that noise)
  "$venv/bin/pip" install -q --disable-pip-version-check -e ".$extra" 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$sum" > "$stamp"
  [ -n "$extra" ] && echo "$sum" > "$venv/.installed"
fi
say "ready: $venv/bin/inotrace"
