#!/bin/bash
# Runs INSIDE the lane's VM (kernels/run boots it): one boot, the backends given.
#   guest.sh RESULTS REPO VM DESELECT BACKEND TESTS [BACKEND TESTS]...
# TESTS and DESELECT are comma-separated pytest node ids or files (relative to
# REPO); DESELECT may be empty. VM names this boot's status file (status-VM).
#
# The guest shares the host's root filesystem read-only (overlays on /tmp,
# /etc, /var...); RESULTS is the one directory written back to the host.
# vng passes no environment in: everything is set here, interpreters are
# called by full path.
set -u
results=$1 repo=$2 vm=$3 deselect=$4
shift 4
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# In CI a skip is a failure (tests/conftest.py); the lane is CI either way.
export CI=true
# /tmp is an overlay over 9p here, where open_by_handle_at (snapshot --paths)
# cannot resolve file handles; /run is a plain tmpfs, as /tmp is on most hosts.
export TMPDIR=/run/inotrace-lane-tmp
mkdir -p -m 1777 "$TMPDIR"
# virtme replaces /etc/shadow with a world-readable file of its own; on a real
# host only root reads it (the opens tests count that EACCES). Cover it with
# an empty root-only file.
if [ -n "$(find /etc/shadow -maxdepth 0 -perm -o=r 2>/dev/null)" ]; then
  install -m 0600 /dev/null /run/inotrace-lane-shadow && mount --bind /run/inotrace-lane-shadow /etc/shadow
fi
kver=$(uname -r)
status=$results/status-$vm
# kernels/disk.sh's disk, if attached: what every start of inotrace reads,
# mounted over the 9p paths it copies (the guest's page cache keeps it).
modprobe -q virtio_blk 2>/dev/null
lane_disk=""
for d in /dev/vd?; do
  [ -b "$d" ] && [ "$(blkid -s LABEL -o value "$d" 2>/dev/null)" = inotrace-lane ] && { lane_disk=$d; break; }
done
if [ -n "$lane_disk" ] && mkdir -p /run/lane-disk && mount -o ro "$lane_disk" /run/lane-disk; then
  while read -r what a b c; do
    case $what in
      bind) mount --bind "/run/lane-disk/$a" "$b" ;;
      link) [ "$a" = "$kver" ] && ln -sfn "/run/lane-disk/$b" "$c" ;;
    esac
  done < /run/lane-disk/manifest
  echo "inotrace-lane: the lane's disk ($lane_disk) mounted over BCC's libraries, Python, the code and the headers"
else
  echo "inotrace-lane: no lane disk: reading everything over 9p"
fi
# kernels/run reads this marker: from here on a failure is a test failure,
# not a boot failure.
echo "inotrace-lane: guest booted kernel $kver ($(nproc) cpus, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB)"
echo "booted $kver $(date +%s)" >> "$status"
# Loopback is all the tests use (serve binds 127.0.0.1).
ip link set lo up 2>/dev/null || true
cd "$repo" || { echo "inotrace-lane: repository $repo not visible in the guest"; echo "norepo" >> "$status"; exit 1; }
while [ $# -ge 2 ]; do
  backend=$1 files=$2
  shift 2
  IFS=, read -r -a tests <<< "$files"
  args=()
  if [ -n "$deselect" ]; then
    IFS=, read -r -a skip <<< "$deselect"
    for d in "${skip[@]}"; do args+=(--deselect "$d"); done
  fi
  if [ "$backend" = bench ]; then
    echo "inotrace-lane: === kernel $kver, bench: ${tests[*]}"
    "$repo/.venv/bin/python" "$repo/${tests[0]}" --out "$results/backends-$kver.json" --path /run
    continue
  fi
  echo "inotrace-lane: === kernel $kver, --probes $backend: ${tests[*]}"
  echo "start $backend $(date +%s)" >> "$status"
  INOTRACE_TEST_PROBES=$backend "$repo/.venv/bin/python" -m pytest -p no:cacheprovider -q -rfE --durations=5 \
    --junitxml="$results/junit-$kver-$backend.xml" -o junit_suite_name="$kver-$backend" "${args[@]}" "${tests[@]}"
  echo "end $backend $? $(date +%s)" >> "$status"
done
echo "done $(date +%s)" >> "$status"
echo "inotrace-lane: guest finished"
