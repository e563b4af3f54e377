#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run only through trap, retry and timed look unreachable
# fresh_check.sh SUITE [STEP ...]: prove that `make test` and `make demo` work on a brand-new Debian
# machine of release SUITE (bookworm = Debian 12 / QGIS 3.22, trixie = Debian 13 / QGIS 3.40,
# sid = Debian unstable / QGIS 3.44, the newest Qt 5 build).
#
# It builds a new minimal Debian root with debootstrap, installs in it only what a fresh machine has
# before a user starts (git, make, python3, ca-certificates), clones the committed state of this
# repository's checked-out branch (main) into it with ../shared beside it, and runs each STEP there
# as root, in the clone, with a clean environment. Each step is timed; output goes to the terminal
# and to a log.
#
# Usage (as root, on a Debian host):
#   scripts/fresh_check.sh bookworm                     # make test, then make demo
#   scripts/fresh_check.sh trixie 'make install'        # any steps instead, run in order
#   FRESH_COMMAND='make install' scripts/fresh_check.sh trixie
#   FRESH_KEEP_ROOT=1 scripts/fresh_check.sh trixie     # keep the root for a look afterwards
#                                                       # (mounts are still removed)
# Variables:
#   FRESH_ROOT_DIR   the new root (default /var/tmp/mus_fresh/SUITE); removed and made anew each run
#   FRESH_LOG        the log (default: FRESH_ROOT_DIR.log, e.g. /var/tmp/mus_fresh/SUITE.log)
#   FRESH_COMMAND    one step to run instead of the default `make test` then `make demo`
#   FRESH_KEEP_GOING run the later steps even when one fails (the exit status still says it failed)
#   FRESH_MIRROR     Debian mirror (default: the one this host's apt sources name)
#   FRESH_REF        branch or commit to check out (default: the branch checked out here, main)
#   FRESH_PIP_CACHE  pip cache whose download part is shared (default /root/.cache/pip)
# Exit status: 0 when every step passed, else non-zero.
set -euo pipefail

usage() { sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
SUITE=$1
shift
if [ $# -gt 0 ]; then
  STEPS=("$@")
elif [ -n "${FRESH_COMMAND:-}" ]; then
  STEPS=("$FRESH_COMMAND")
else
  STEPS=("make test" "make demo")
fi

[ "$(id -u)" -eq 0 ] || { echo "fresh_check: run as root (debootstrap, chroot, mount)" >&2; exit 2; }

# The repository is the one holding this script; ../shared beside it holds the data its tests read.
REPO=$(git -C "$(dirname "$(readlink -f "$0")")" rev-parse --show-toplevel)
SHARED=$(dirname "$REPO")/shared
# The committed state that is checked out here (the branch, or the commit when detached), never the
# working tree: what a user would clone.
REF=${FRESH_REF:-$(git -C "$REPO" symbolic-ref -q --short HEAD || git -C "$REPO" rev-parse HEAD)}
# Outside the repository, so that nothing of the check can end up in a commit or in the clone.
ROOT_DIR=${FRESH_ROOT_DIR:-/var/tmp/mus_fresh/$SUITE}
ROOT_DIR=$(readlink -m "$ROOT_DIR")
case "$ROOT_DIR" in /|/bin|/boot|/dev|/etc|/home|/lib*|/proc|/root|/sbin|/sys|/usr|/var|/var/tmp|/tmp)
  echo "fresh_check: refusing to use $ROOT_DIR as the new root" >&2; exit 2 ;;
esac
case "$ROOT_DIR/" in "$REPO"/*)
  echo "fresh_check: the root must lie outside the repository" >&2; exit 2 ;;
esac
LOG=${FRESH_LOG:-$ROOT_DIR.log}
CACHE_BASE=$(dirname "$ROOT_DIR")
# Download caches only: the same .deb files and PyPI downloads, checked by apt and pip as always,
# so a repeated check installs exactly what a first one does, without fetching QGIS again.
APT_CACHE=$CACHE_BASE/apt-archives-$SUITE
DEBOOTSTRAP_CACHE=$CACHE_BASE/debootstrap-$SUITE
PIP_CACHE=${FRESH_PIP_CACHE:-/root/.cache/pip}
CLONE=/home/user/mus_qgis                    # inside the root
CLONE_SHARED=$(dirname "$CLONE")/shared      # the repository reads ../shared/data
mkdir -p "$CACHE_BASE" "$APT_CACHE/partial" "$DEBOOTSTRAP_CACHE" "$PIP_CACHE/http" "$PIP_CACHE/http-v2"

# Everything from here on goes to the terminal and to the log.
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
echo "fresh_check $SUITE: $(date -u '+%Y-%m-%d %H:%M:%SZ'), repository $REPO ($REF" \
  "$(git -C "$REPO" rev-parse --short "$REF")), root $ROOT_DIR, log $LOG"

# What the check itself needs on this host, from its own Debian packages when missing (a host
# that is itself fresh has no debootstrap).
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v findmnt >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing on this host: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The mirror this host's apt uses (only Debian's mirrors answer here): the first enabled source
# whose path ends in /debian, from one-line .list files or deb822 .sources files.
host_mirror() {
  local files=() file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] && files+=("$file")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  sed -n -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]\+\).*/\2/p' \
         -e 's/^[[:space:]]*URIs:[[:space:]]*//p' "${files[@]}" \
    | tr ' ' '\n' | grep -E '^https?://[^[:space:]]+/debian/?$' | head -n1 | sed 's:/*$::'
}
MIRROR=${FRESH_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# The security archive lives beside the main one on deb.debian.org and on most mirrors.
SECURITY_MIRROR=${FRESH_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}

# Bind mounts into the root; cleanup (trap on EXIT) unmounts everything under the root.
bind() {  # bind SOURCE TARGET [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
mounts_under_root() {
  findmnt -rn -o TARGET | awk -v r="$ROOT_DIR" '$0 == r || index($0, r "/") == 1'
}

# Processes left in the root (a daemon a package started, a test's server) keep the mounts busy:
# end those, and only those, whose root directory is the new root. They were all started here.
stop_root_processes() {
  local proc pids=()
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$ROOT_DIR" ] && pids+=("${proc#/proc/}")
  done
  [ ${#pids[@]} -eq 0 ] && return 0
  echo "fresh_check: ending processes left in the root: ${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  sleep 2
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Unmount whatever is mounted under the root, deepest first: also what an interrupted earlier run
# may have left, which must go before the root is removed (rm -rf through a bind mount of /dev or
# of ../shared would reach the host's files).
unmount_all() {
  local target
  [ -d "$ROOT_DIR" ] || return 0
  stop_root_processes
  for target in $(mounts_under_root | sort -r); do
    umount "$target" 2>/dev/null || umount -l "$target" || true
  done
}

cleanup() {
  local rc=$?
  set +e
  unmount_all
  if [ -n "$(mounts_under_root)" ]; then
    echo "fresh_check: WARNING: mounts left under $ROOT_DIR:"; mounts_under_root
  elif [ -z "${FRESH_KEEP_ROOT:-}" ] && [ -n "${CHECK_DONE:-}" ]; then
    rm -rf --one-file-system "$ROOT_DIR"
  fi
  # Let tee write the last lines to the terminal and the log before the script ends.
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Network steps get three tries; the project's own make steps run once.
retry() {
  local try
  for try in 1 2 3; do
    "$@" && return 0
    [ "$try" -lt 3 ] && { echo "fresh_check: failed (try $try of 3), again in 15 s: $*"; sleep 15; }
  done
  return 1
}

# Runs a command inside the root with a clean environment: a user's fresh machine has none of this
# host's PIP_* variables, pip configuration or wheel store, so nothing of the host's environment
# goes in apart from TERM (and CI, which tools read to behave as in CI). PIP_CERT names the system
# bundle (with the proxy's CA, see below) for any pip that would use its own certifi bundle; it
# stands in for the plain internet a user has and changes nothing that gets installed.
in_root() {
  local env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
             LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive
             PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
  [ -n "${CI:-}" ] && env+=(CI="$CI")
  # In the background and waited for, so that a TERM or INT reaches the trap at once (bash runs
  # traps only after a foreground command ends); cleanup then ends what runs in the root.
  chroot "$ROOT_DIR" /usr/bin/env -i "${env[@]}" /bin/bash -c "$1" &
  wait "$!"
}

declare -A TIME
timed() {  # timed NAME COMMAND...: runs it, records its seconds
  local name=$1 start=$SECONDS
  shift
  "$@"
  TIME[$name]=$((SECONDS - start))
}

# --- A new root, made from scratch ------------------------------------------------------------
unmount_all
rm -rf --one-file-system "$ROOT_DIR"
CHECK_DONE=  # set once the root is ours to remove

make_root() {
  rm -rf --one-file-system "$ROOT_DIR"  # a failed try leaves half a root behind
  debootstrap --variant=minbase --cache-dir="$DEBOOTSTRAP_CACHE" "$SUITE" "$ROOT_DIR" "$MIRROR"
}
echo "== debootstrap $SUITE from $MIRROR"
timed debootstrap retry make_root
CHECK_DONE=1

# Name resolution and TLS: the package indexes and PyPI answer only through the host's resolver,
# and this host's HTTPS goes through a proxy whose CA only the host's bundle holds. The bundle is
# copied in, and the host's local CAs too: installing the ca-certificates package below rebuilds
# the bundle from the CAs it ships plus /usr/local/share/ca-certificates, which keeps them.
cp /etc/resolv.conf "$ROOT_DIR/etc/resolv.conf"
mkdir -p "$ROOT_DIR/etc/ssl/certs" "$ROOT_DIR/usr/local/share/ca-certificates"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT_DIR/etc/ssl/certs/ca-certificates.crt"
if [ -d /usr/local/share/ca-certificates ]; then
  cp -r /usr/local/share/ca-certificates/. "$ROOT_DIR/usr/local/share/ca-certificates/"
fi
# A fresh machine's installer writes /etc/hosts; minbase does not, and tests serve on localhost.
[ -s "$ROOT_DIR/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
  > "$ROOT_DIR/etc/hosts"
# The sources a fresh machine of this release has: main, updates and security (unstable has only
# main: it gets no updates or security suites).
case "$SUITE" in
  sid|unstable)
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$ROOT_DIR/etc/apt/sources.list"
    # Unstable's Release file is valid for a week only; the mirror this host reaches may be a
    # snapshot older than that, which apt would refuse (a user's live mirror never is).
    echo 'Acquire::Check-Valid-Until "false";' > "$ROOT_DIR/etc/apt/apt.conf.d/99fresh-check-snapshot"
    ;;
  *) cat > "$ROOT_DIR/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  ;;
esac
# Package scripts must not start daemons in the root: they would outlive the check and keep its
# mounts busy. (This changes nothing that gets installed.)
printf '#!/bin/sh\nexit 101\n' > "$ROOT_DIR/usr/sbin/policy-rc.d"
chmod 755 "$ROOT_DIR/usr/sbin/policy-rc.d"

# QGIS, pip and the tests need /proc, /sys and /dev; /dev/shm is a fresh tmpfs (Python's
# multiprocessing and torch use it), as on a real machine.
bind /proc "$ROOT_DIR/proc"
bind /sys "$ROOT_DIR/sys"
bind /dev "$ROOT_DIR/dev"
bind /dev/pts "$ROOT_DIR/dev/pts"
mkdir -p "$ROOT_DIR/dev/shm"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$ROOT_DIR/dev/shm"
bind "$APT_CACHE" "$ROOT_DIR/var/cache/apt/archives"
# Only pip's HTTP download cache (http for pip < 23.3, http-v2 after), not its wheel cache: a wheel
# built earlier from source would hide a source build that fails on a fresh machine.
bind "$PIP_CACHE/http" "$ROOT_DIR/root/.cache/pip/http"
bind "$PIP_CACHE/http-v2" "$ROOT_DIR/root/.cache/pip/http-v2"

echo "== apt: git make python3 ca-certificates"
timed apt retry in_root 'apt-get update -q && apt-get install -y -q --no-install-recommends \
  git make python3 ca-certificates'

# --- The repository: the committed state of main, not the working tree --------------------------
echo "== clone $REPO ($REF) into $CLONE, $SHARED at $CLONE_SHARED (read-only)"
clone() {
  mkdir -p "$ROOT_DIR$(dirname "$CLONE")"
  git clone -q --no-hardlinks "$REPO" "$ROOT_DIR$CLONE"
  git -C "$ROOT_DIR$CLONE" checkout -q "$REF"
  bind "$SHARED" "$ROOT_DIR$CLONE_SHARED" ro
}
timed clone clone

# --- The project's own commands -----------------------------------------------------------------
FAILED=0
SUMMARY=()
for step in "${STEPS[@]}"; do
  if [ "$FAILED" -ne 0 ] && [ -z "${FRESH_KEEP_GOING:-}" ]; then
    SUMMARY+=("'$step' skipped")
    continue
  fi
  echo "== $step"
  start=$SECONDS
  rc=0
  in_root "cd $CLONE && $step" || rc=$?
  seconds=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    SUMMARY+=("'$step' ${seconds}s ok")
  else
    SUMMARY+=("'$step' ${seconds}s FAILED (rc $rc)")
    FAILED=1
  fi
  echo "== $step: rc $rc, ${seconds}s"
done

line="debootstrap ${TIME[debootstrap]}s, apt ${TIME[apt]}s, clone ${TIME[clone]}s"
for part in "${SUMMARY[@]}"; do line+=", $part"; done
echo "fresh_check $SUITE: $([ "$FAILED" -eq 0 ] && echo PASSED || echo FAILED): $line"
exit "$FAILED"
