#!/usr/bin/env bash
# Idempotent installer for the kernel-matrix lane (kernels/run): a second run on
# a ready machine installs nothing and takes about a second.
#
#   - Debian's qemu-system-x86 (the VM) and busybox-static (virtme-ng builds
#     its initramfs with it);
#   - Debian's own kernel linux-image-<v>-amd64 (CONFIG_KPROBES=y), <v> being
#     the version of the installed linux-headers-<v>-amd64: BCC in the guest
#     compiles against /lib/modules/$(uname -r)/build, so image and headers
#     must match;
#   - virtme-ng (PyPI, command `vng`) in its own venv, kernels/.venv, so it
#     never touches the project's .venv.
#
# Prints the kernel version it prepared as its last line: "kernel: <v>".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
say() { printf 'kernels/setup: %s\n' "$*"; }
die() { printf 'kernels/setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs distribution packages)"
command -v apt-get >/dev/null || die "needs apt-get (Debian/Ubuntu)"
arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || die "the lane boots Debian's amd64 kernel; this machine is $arch"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { say "apt-get update"; apt-get update -q >/dev/null; apt_updated=1; }; }
apt_install() {
  apt_update
  say "installing $*"
  # initramfs-tools runs for a linux-image; its output is noise here.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# --- headers, then the matching kernel image -------------------------------------
# The newest installed linux-headers-<v>-amd64 decides <v>. On a machine with
# none (the project's `make setup` installs them), the generic meta-package
# brings the distribution's current ones.
newest_headers() { ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1; }
if [ -z "$(newest_headers)" ]; then
  apt_install linux-headers-amd64
fi
hdr=$(newest_headers)
[ -n "$hdr" ] || die "no /usr/src/linux-headers-*-amd64 after installing linux-headers-amd64"
kver=${hdr#/usr/src/linux-headers-}
[ -e "/lib/modules/$kver/build" ] || die "/lib/modules/$kver/build is missing: reinstall linux-headers-$kver"

pkgs=(qemu-system-x86 busybox-static "linux-image-$kver")
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  apt-cache show "linux-image-$kver" >/dev/null 2>&1 ||
    die "the distribution has no linux-image-$kver (headers $hdr): install headers of a version it has"
  apt_install "${missing[@]}"
else
  say "distribution packages present: ${pkgs[*]}"
fi
[ -r "/boot/vmlinuz-$kver" ] || die "/boot/vmlinuz-$kver missing after installing linux-image-$kver"
[ -d "/lib/modules/$kver/kernel" ] || die "/lib/modules/$kver/kernel missing: the guest could not load 9p/virtio modules"

# --- virtme-ng in its own venv ----------------------------------------------------
venv=$here/.venv
want="virtme-ng==1.42"  # pinned: the lane's command line was measured with it
stamp=$venv/.installed
if [ -x "$venv/bin/vng" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  say "virtme-ng present: $venv/bin/vng"
else
  rm -rf "$venv"
  say "creating $venv with $want"
  /usr/bin/python3 -m venv "$venv"
  # (this machine's pip.conf names local indexes that may be absent: hide that noise)
  "$venv/bin/pip" install -q --disable-pip-version-check "$want" 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" > "$stamp"
fi
"$venv/bin/vng" --version >/dev/null 2>&1 || die "$venv/bin/vng does not run"
say "kernel: $kver"
