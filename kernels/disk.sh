#!/usr/bin/env bash
# Builds the lane's read-only disk: what every start of inotrace in a guest
# reads (BCC's LLVM and clang libraries, the guest kernel's headers, Python's
# standard library and packages, the repository's code), for guest.sh to
# mount over the same paths of the 9p root.
#
#   kernels/disk.sh IMAGE REPO KVER:BUILD:SOURCE [KVER:BUILD:SOURCE]...
#
# Why: the guest sees the host's root over 9p, where every page it faults in
# is a round trip to the host; BCC maps ~230 MB of LLVM and reads hundreds of
# header files at each start. From a virtio disk the guest's page cache keeps
# them. Measured on 6.1 under TCG: a compile 8.0 -> 6.1 s, a whole start of
# `trace` 15.6 -> 13.2 s. The disk holds copies only: the guest still runs
# the host's files, and without the disk (or if it cannot be mounted) it
# reads them over 9p as before.
#
# IMAGE's manifest (one line each, read by guest.sh):
#   bind <path in image> <guest path>       mounted over the guest path
#   link <kver> <path in image> <guest path> for that kernel only: a symlink
set -euo pipefail
say() { printf 'kernels/disk: %s\n' "$*"; }
die() { printf 'kernels/disk: error: %s\n' "$*" >&2; exit 1; }

[ $# -ge 3 ] || die "usage: $0 IMAGE REPO KVER:BUILD:SOURCE..."
image=$1 repo=$2
shift 2
stage=$(mktemp -d /tmp/inotrace-lane-disk.XXXXXX)
trap 'rm -rf "$stage"' EXIT
manifest=$stage/manifest
: > "$manifest"

# What no start of inotrace and no lane test reads: not worth copying.
EXCLUDE=(--exclude=kubernetes_validate --exclude='*mypyc*' --exclude=mypy --exclude=pip --exclude=setuptools
  --exclude='config-3*' --exclude=test --exclude=idlelib --exclude=tkinter --exclude=ensurepip)

bind_copy() {  # SOURCE NAME: copy SOURCE (file or directory) into the image, bound over SOURCE
  local src=$1 name=$2
  [ -e "$src" ] || return 0
  mkdir -p "$stage/$(dirname "$name")"
  if [ -d "$src" ]; then
    mkdir -p "$stage/$name"
    tar -C "$src" -cf - "${EXCLUDE[@]}" . | tar -C "$stage/$name" -xf -
  else
    cp -L "$src" "$stage/$name"
  fi
  echo "bind $name $(readlink -f "$src")" >> "$manifest"
}

# BCC and the shared libraries it maps: LLVM and clang are most of it.
bcc_lib=$(ldconfig -p | awk '/libbcc\.so\.0 / {print $NF; exit}')
[ -n "$bcc_lib" ] || die "libbcc.so.0 not found (python3-bpfcc installed?)"
for lib in "$bcc_lib" $(ldd "$bcc_lib" | awk '$3 ~ /^\// {print $3}'); do
  real=$(readlink -f "$lib")
  bind_copy "$real" "lib/$(basename "$real")"
done
# Python: the standard library, the distribution's packages (bcc), the project's venv and code.
py=$(readlink -f /usr/bin/python3)
stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
bind_copy "$stdlib" py/stdlib
bind_copy /usr/lib/python3/dist-packages py/dist-packages
for site in "$repo"/.venv/lib/python3*/site-packages; do bind_copy "$site" py/venv; done
bind_copy "$repo/src" repo/src
bind_copy "$repo/tests" repo/tests
# Each kernel's headers, where BCC looks for them in that kernel's guest.
for spec in "$@"; do
  IFS=: read -r kver build source <<< "$spec"
  for part in build source; do
    dir=${!part}
    [ -d "$dir" ] || die "$kver: no headers at $dir"
    mkdir -p "$stage/headers/$kver"
    cp -a "$(readlink -f "$dir")" "$stage/headers/$kver/$part"
    echo "link $kver headers/$kver/$part /lib/modules/$kver/$part" >> "$manifest"
  done
done
size=$(du -sm "$stage" | cut -f1)
files=$(find "$stage" | wc -l)
mke2fs -q -F -t ext4 -L inotrace-lane -N "$((files * 5 / 4 + 1024))" -d "$stage" "$image" "$((size * 5 / 4 + 64))M"
say "$image: ${size} MiB (BCC's libraries, Python, the code, the headers of $# kernel(s))"
