#!/usr/bin/env bash
# Idempotent installer for the kernel-matrix lane (kernels/run): a second run on
# a ready machine installs and downloads nothing and takes a few seconds.
#
#   kernels/setup.sh [SERIES...]     SERIES: 5.10 6.1 6.12 (default: all three)
#
# What it prepares:
#   - Debian's qemu-system-x86 (the VM) and busybox-static (virtme-ng builds
#     its initramfs with it), and virtme-ng (PyPI, `vng`, pinned) in its own
#     venv, kernels/.venv, so it never touches the project's .venv;
#   - 6.1, bookworm's own kernel: linux-image-<v>-amd64 installed with apt, <v>
#     the version of the installed linux-headers-<v>-amd64 (BCC in the guest
#     compiles against /lib/modules/<v>/build: image and headers must match);
#   - 5.10 (bullseye) and 6.12 (trixie): the newest linux-image-<v>-amd64 of
#     those suites and its linux-headers, *unpacked* under $LANE_CACHE/<v> (default /var/lib/inotrace-lane)
#     (boot/, lib/modules/<v>/ with build and source linked to the unpacked
#     headers), never installed: 6.12's headers depend on gcc-14 and
#     5.10's on gcc-10, neither of which installs beside bookworm's user space
#     (BCC needs the headers, not the compiler), and an unpacked kernel needs
#     no initramfs and leaves /boot and dpkg's database alone. virtme boots an
#     image from there and takes its modules from beside it.
#     The two suites are added as apt sources pinned so that nothing but
#     linux-image-*/linux-headers-* can come from them, and those only when
#     named (priority 1; everything else -1): the machine is never upgraded
#     from them, and setup checks that apt would upgrade nothing from them.
#
# Prints one line per kernel it prepared, last:
#   "kernel: <series> <version> <vmlinuz> <modules dir, with build and source>".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
say() { printf 'kernels/setup: %s\n' "$*"; }
die() { printf 'kernels/setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs distribution packages)"
command -v apt-get >/dev/null || die "needs apt-get (Debian/Ubuntu)"
arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || die "the lane boots Debian's amd64 kernels; this machine is $arch"
# /var/lib, not /var/cache: virtme mounts a tmpfs over /var/cache in the guest
cache=${LANE_CACHE:-/var/lib/inotrace-lane}
series=("$@")
[ ${#series[@]} -gt 0 ] || series=(5.10 6.1 6.12)
for s in "${series[@]}"; do
  case $s in 5.10 | 6.1 | 6.12) ;; *) die "unknown kernel series '$s' (5.10, 6.1 or 6.12)" ;; esac
done

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { say "apt-get update"; apt-get update -q >/dev/null; apt_updated=1; }; }
apt_install() {
  apt_update
  say "installing $*"
  # initramfs-tools runs for a linux-image; its output is noise here.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# --- the VM and virtme-ng ----------------------------------------------------------
pkgs=(qemu-system-x86 busybox-static)
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; else say "distribution packages present: ${pkgs[*]}"; fi

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

# --- 6.1: bookworm's kernel, installed ----------------------------------------------
prepare_6_1() {
  newest_headers() { ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1; }
  [ -n "$(newest_headers)" ] || apt_install linux-headers-amd64
  local hdr kver
  hdr=$(newest_headers)
  [ -n "$hdr" ] || die "no /usr/src/linux-headers-*-amd64 after installing linux-headers-amd64"
  kver=${hdr#/usr/src/linux-headers-}
  [ -e "/lib/modules/$kver/build" ] || die "/lib/modules/$kver/build is missing: reinstall linux-headers-$kver"
  if ! installed "linux-image-$kver"; then
    apt_update
    apt-cache show "linux-image-$kver" >/dev/null 2>&1 ||
      die "the distribution has no linux-image-$kver (headers $hdr): install headers of a version it has"
    apt_install "linux-image-$kver"
  fi
  [ -r "/boot/vmlinuz-$kver" ] || die "/boot/vmlinuz-$kver missing after installing linux-image-$kver"
  [ -d "/lib/modules/$kver/kernel" ] || die "/lib/modules/$kver/kernel missing: the guest could not load 9p/virtio modules"
  say "kernel: 6.1 $kver /boot/vmlinuz-$kver /lib/modules/$kver"
}

# --- 5.10 and 6.12: other suites, unpacked -------------------------------------------
sources=/etc/apt/sources.list.d/inotrace-lane.sources
prefs=/etc/apt/preferences.d/inotrace-lane
add_suites() {
  local want_src want_prefs
  want_src="# Added by inotrace's kernels/setup.sh: Debian kernels for the kernel-matrix lane.
# $prefs lets only linux-image-*/linux-headers-* come from here, and only when named.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"
  want_prefs="# Added by inotrace's kernels/setup.sh: kernel images and headers from bullseye and
# trixie only when named (priority 1, below any installed package's 100), nothing
# else ever (-1): the machine is never upgraded from these suites.
Package: linux-image-* linux-headers-*
Pin: release n=bullseye
Pin-Priority: 1

Package: linux-image-* linux-headers-*
Pin: release n=trixie
Pin-Priority: 1

Package: *
Pin: release n=bullseye
Pin-Priority: -1

Package: *
Pin: release n=trixie
Pin-Priority: -1
"
  if ! cmp -s "$sources" <(printf '%s' "$want_src") || ! cmp -s "$prefs" <(printf '%s' "$want_prefs"); then
    say "adding apt sources bullseye and trixie ($sources), pinned in $prefs: kernel images and headers only, when named; nothing is upgraded from them"
    printf '%s' "$want_src" > "$sources"
    printf '%s' "$want_prefs" > "$prefs"
    apt_updated=0
  fi
  local policy
  policy=$(apt-cache policy 2>/dev/null)  # (grep -q on a pipe would SIGPIPE apt-cache under pipefail)
  grep -q "n=trixie" <<< "$policy" || apt_update
  local upgrades
  upgrades=$(apt-get -s -o Debug::NoLocking=1 dist-upgrade 2>/dev/null | grep '^Inst ' | grep -cE 'bullseye|trixie' || true)
  [ "$upgrades" = 0 ] || die "apt would upgrade $upgrades package(s) from bullseye/trixie: check $prefs"
  say "apt sources bullseye, trixie: pinned (would upgrade 0 packages from them)"
}

# newest NAME of a package matching REGEX (apt's view), e.g. linux-image-5.10.0-32-amd64
newest_package() {
  apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$1" | sort -V | tail -n1
}

unpack() {  # unpack PACKAGE... into DIR (downloaded into DIR/.debs)
  local dir=$1
  shift
  mkdir -p "$dir/.debs"
  chown _apt "$dir/.debs" 2>/dev/null || true  # apt downloads as _apt where it can
  (cd "$dir/.debs" && apt-get download -q "$@" >/dev/null) || die "could not download $*"
  for p in "$@"; do dpkg-deb -x "$dir/.debs/${p}"_*.deb "$dir"; done
  rm -rf "$dir/.debs"
}

prepare_unpacked() {  # SERIES REGEX
  local s=$1 image kver root moddir ready
  image=$(newest_package "$2")
  [ -n "$image" ] || die "no package matching $2 in apt's lists (bullseye/trixie sources)"
  kver=${image#linux-image-}
  root=$cache/$kver
  ready="$root/.ready"
  if [ ! -f "$ready" ]; then
    say "downloading and unpacking $image and its headers into $root (not installed)"
    rm -rf "$root"
    unpack "$root" "$image" "linux-headers-$kver" "linux-headers-${kver%-amd64}-common"
    moddir=$root/lib/modules/$kver
    [ -d "$moddir" ] || moddir=$root/usr/lib/modules/$kver
    [ -d "$moddir" ] || die "$image has no lib/modules/$kver"
    # the package's own links point at /usr/src of a machine that installed it
    ln -sfn "$root/usr/src/linux-headers-$kver" "$moddir/build"
    ln -sfn "$root/usr/src/linux-headers-${kver%-amd64}-common" "$moddir/source"
    depmod -b "${moddir%/lib/modules/$kver}" "$kver"
    touch "$ready"
  fi
  [ -r "$root/boot/vmlinuz-$kver" ] || die "$root/boot/vmlinuz-$kver missing"
  moddir=$root/lib/modules/$kver
  [ -d "$moddir" ] || moddir=$root/usr/lib/modules/$kver
  say "kernel: $s $kver $root/boot/vmlinuz-$kver $moddir"
}

suites_added=0
for s in "${series[@]}"; do
  case $s in
    6.1) prepare_6_1 ;;
    5.10 | 6.12)
      [ $suites_added = 1 ] || { add_suites; suites_added=1; }
      if [ "$s" = 5.10 ]; then
        prepare_unpacked 5.10 '^linux-image-5\.10\.0-[0-9]+-amd64$'
      else
        prepare_unpacked 6.12 '^linux-image-6\.12\.[0-9]+\+deb13-amd64$'
      fi
      ;;
  esac
done
