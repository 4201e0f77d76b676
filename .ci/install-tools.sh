#!/usr/bin/env bash
# Command-line tools the tests use beside Python: rsync (a finished project copied with
# `rsync -a` must have nothing to rebuild, tests/workflow/test_invalidation.py). Idempotent: no apt
# traffic when everything is installed. Debian/Ubuntu, as root or with passwordless sudo.
# Sourced by .ci/install-slurm.sh for its helpers (missing_executables, apt_install).
set -euo pipefail

# The executables among "$@" found neither on PATH nor in /usr/sbin (daemons live there).
missing_executables() {
    local exe
    for exe in "$@"; do
        command -v "$exe" >/dev/null 2>&1 || [ -x "/usr/sbin/$exe" ] || echo "$exe"
    done
}

# apt-get install the packages "$@" (without recommends), through sudo unless root.
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "$0: need root or sudo" >&2; exit 1; }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    needed=(rsync)
    mapfile -t missing < <(missing_executables "${needed[@]}")
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "install-tools: ${needed[*]} already installed"
        exit 0
    fi
    apt_install "${missing[@]}"
fi
