#!/usr/bin/env bash
# A Debian 13 (trixie, glibc 2.41) chroot for the TFX 1.21 stack on a machine
# whose own glibc is older than 2.39 (Debian 12 has 2.36): ml-metadata and
# TFDV 1.21 ship only manylinux_2_39 wheels.
#
#   .ci/trixie-chroot.sh                 build (or re-use) the chroot, then a shell
#   .ci/trixie-chroot.sh CMD [ARG...]    build (or re-use) it, run CMD in the repo
#
# Built from Debian's own packages with debootstrap (installed with apt-get if
# missing); re-used when it is already complete (the stamp file), so only the
# first call pays for it. Needs root (debootstrap, mount, chroot).
#
# Python 3.11: trixie ships only 3.13, which TFX 1.21 does not support, so the
# host's Python 3.11 (a pyenv build, found as below) is bind-mounted read-only
# at the same path. That is why the chroot carries the shared libraries its
# standard-library modules link against (ssl, sqlite3, ctypes, bz2, readline).
# Set PYTHON_PREFIX=/path/to/prefix to mount another one (e.g. a 3.12).
#
# Inside, only what the tests need from Debian:
#   g++, make: pyfarmhash (a TFX dependency) is published only as source, so
#     pip compiles it; make runs the project's targets
#   ca-certificates: pip's HTTPS (the host's /etc/ssl/certs is bind-mounted
#     over it at run time, so the chroot trusts what the host trusts)
#   libssl3t64 libsqlite3-0 libffi8 libbz2-1.0 libreadline8t64 libncursesw6
#     libnsl2 libexpat1: the pyenv Python's standard-library modules
#
# Mounted while CMD runs (and unmounted on exit, whatever happens): /proc,
# /dev, /dev/pts, the repository at its own path, its sibling ../shared when
# there is one (the real ml-100k), the Python prefix (read-only), the host's
# /etc/ssl/certs (read-only). Never `rm -rf` the chroot while a command runs.
set -euo pipefail

ROOT=${TRIXIE_ROOT:-/var/tmp/trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PACKAGES=g++,make,ca-certificates,libssl3t64,libsqlite3-0,libffi8,libbz2-1.0,libreadline8t64,libncursesw6,libnsl2,libexpat1
STAMP=$ROOT/.movielens-tfx-chroot-ready

if [ "$(id -u)" != 0 ]; then
  echo "error: $0 needs root (debootstrap, mount, chroot)" >&2
  exit 1
fi

find_python() {
  local c
  if [ -n "${PYTHON_PREFIX:-}" ]; then
    [ -x "$PYTHON_PREFIX/bin/python3" ] && echo "$PYTHON_PREFIX" && return 0
    return 1
  fi
  for c in "$(pyenv prefix 3.11 2>/dev/null || true)" "$HOME"/.pyenv/versions/3.11.*; do
    if [ -n "$c" ] && [ -x "$c/bin/python3.11" ]; then echo "$c"; return 0; fi
  done
  return 1
}
if ! PYPREFIX=$(find_python); then
  echo "error: no Python 3.11 prefix to mount into the chroot." >&2
  echo "  Install one with 'pyenv install 3.11' (or set PYTHON_PREFIX=/its/prefix)." >&2
  exit 1
fi

# ---- build, once ---------------------------------------------------------
if [ ! -e "$STAMP" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  echo "building the Debian 13 chroot in $ROOT (debootstrap --variant=minbase trixie)"
  start=$(date +%s)
  # Built aside and moved into place when complete: an interrupted build leaves no half chroot.
  if [ -e "$ROOT" ]; then
    echo "error: $ROOT exists but is not a complete chroot (no $STAMP); remove it first" >&2
    exit 1
  fi
  rm -rf "$ROOT.partial"
  nice -n 15 debootstrap --variant=minbase --include="$PACKAGES" trixie "$ROOT.partial" "$MIRROR" \
    > "$ROOT.debootstrap.log" 2>&1 || { tail -30 "$ROOT.debootstrap.log" >&2; exit 1; }
  rm -rf "$ROOT.partial"/var/cache/apt/archives/*.deb
  touch "$ROOT.partial/$(basename "$STAMP")"
  mv "$ROOT.partial" "$ROOT"
  secs=$(( $(date +%s) - start ))
  echo "chroot built in $((secs / 60)) min $((secs % 60)) s; $(du -sh "$ROOT" | cut -f1) on disk"
else
  echo "re-using the chroot in $ROOT ($(du -sh "$ROOT" 2>/dev/null | cut -f1) on disk)"
fi

# ---- mount, run, unmount -------------------------------------------------
MOUNTED=()
bind() {  # bind SRC [ro]: SRC at the same path inside the chroot
  mkdir -p "$ROOT$1"
  mount --bind "$1" "$ROOT$1"
  MOUNTED=("$ROOT$1" "${MOUNTED[@]}")
  if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$ROOT$1"; fi
}
cleanup() {
  local m
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}
trap cleanup EXIT

mount -t proc proc "$ROOT/proc"; MOUNTED=("$ROOT/proc")
bind /dev
bind /dev/pts
bind "$REPO"
if [ -d "$REPO/../shared" ]; then bind "$(cd "$REPO/../shared" && pwd)" ro; fi
bind "$PYPREFIX" ro
if [ -d /etc/ssl/certs ]; then bind /etc/ssl/certs ro; fi
# Names as the host resolves them: DNS for pip and apt, and /etc/hosts (minbase has none) for
# localhost and this host's name (TensorBoard binds 127.0.0.1 but looks up "localhost";
# mariadb-install-db refuses a hostname it cannot resolve).
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/hosts "$ROOT/etc/hosts"
hostname > "$ROOT/etc/hostname"
mkdir -p "$ROOT/tmp" && chmod 1777 "$ROOT/tmp"

# The tests' own Debian packages, as .ci/run installs them on the host (chromium renders report.html,
# mariadb-server's binaries serve the shared ML Metadata store), installed once into the chroot; a
# policy-rc.d keeps their packages from starting services in it.
TEST_PACKAGES=(chromium mariadb-server)
missing=()
for p in "${TEST_PACKAGES[@]}"; do chroot "$ROOT" dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing in the chroot: ${missing[*]}"
  start=$(date +%s)
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d" && chmod +x "$ROOT/usr/sbin/policy-rc.d"
  in_root() { chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
  in_root apt-get update -qq >/dev/null
  in_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  in_root apt-get clean
  echo "installed in $(( $(date +%s) - start )) s"
fi

echo "glibc in the chroot: $(chroot "$ROOT" ldd --version | head -1 | awk '{print $NF}'); Python: $PYPREFIX"
if [ $# -eq 0 ]; then set -- bash; fi
chroot "$ROOT" /usr/bin/env -i \
  HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
  PATH="$PYPREFIX/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
  ${PIP_CERT:+PIP_CERT="$PIP_CERT"} PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
  ${STACK:+STACK="$STACK"} ${CI:+CI="$CI"} \
  bash -c 'cd "$1" && shift && exec "$@"' bash "$REPO" "$@"
