#!/usr/bin/env bash
# Install the Debian packages mus_qgis needs (QGIS 3.22 and its Python bindings, the tools to build
# pyproj and shapely against the system PROJ and GEOS, Xvfb for screenshots), when any is missing
# and we are root.
set -euo pipefail

packages=(qgis python3-qgis qgis-providers python3-venv python3-dev xvfb xauth libproj-dev
          libgeos-dev build-essential unzip)
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
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
