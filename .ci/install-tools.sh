#!/usr/bin/env bash
# Command-line tools the tests use beside Python: rsync (a finished project copied with
# `rsync -a` must have nothing to rebuild, tests/workflow/test_invalidation.py). Idempotent: no apt
# traffic when everything is installed. Debian/Ubuntu, as root or with passwordless sudo.
set -euo pipefail

needed=(rsync)
missing=()
for exe in "${needed[@]}"; do
    command -v "$exe" >/dev/null 2>&1 || missing+=("$exe")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-tools: ${needed[*]} already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-tools: need root or sudo" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
