#!/usr/bin/env bash
# Install the Debian packages mus_qgis needs when any is missing and we are root: QGIS and its
# Python bindings, python3-venv (the engine environment is a venv made from Debian's Python),
# Xvfb and a window manager for the desktop test, and e2fsprogs for chattr, with which the tests
# make a folder read-only for root, who ignores permissions (Debian 13's minimal systems lack it).
# Nothing is compiled: the engine's packages come as binary wheels into their own environment.
set -euo pipefail

packages=(qgis python3-qgis qgis-providers python3-venv xvfb xauth openbox x11-utils unzip
  e2fsprogs)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
for try in 1 2 3; do
  apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}" && exit 0
  echo "apt-get failed (try $try of 3); retrying in 10 s" >&2
  sleep 10
done
exit 1
