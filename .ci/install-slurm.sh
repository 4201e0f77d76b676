#!/usr/bin/env bash
# Install a single-node-capable Slurm (slurmctld + slurmd + client tools) and
# munge from the distribution's packages. Idempotent: does nothing (no apt
# traffic) when everything is already installed. Intended for CI images
# (Debian/Ubuntu, run as root or with passwordless sudo).
#
# Used by tests/workflow/test_slurm.py via tests/slurm/cluster.sh, which starts the
# daemons itself (no systemd needed).
set -euo pipefail

# (sbatch --version would need a slurm.conf; ask dpkg instead)
slurm_version() { dpkg-query -W -f='slurm-wlm ${Version}' slurm-wlm 2>/dev/null || echo "slurm (version unknown)"; }

needed=(sbatch squeue sinfo scontrol scancel slurmctld slurmd munged munge)
missing=()
for exe in "${needed[@]}"; do
    command -v "$exe" >/dev/null 2>&1 \
        || [ -x "/usr/sbin/$exe" ] || missing+=("$exe")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-slurm: slurm and munge already installed ($(slurm_version))"
    exit 0
fi
echo "install-slurm: missing: ${missing[*]}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-slurm: need root or sudo" >&2; exit 1; }
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# slurm-wlm pulls slurmctld, slurmd and slurm-client; --no-install-recommends
# keeps the image small (no slurmdbd/mariadb; the tests use jobcomp/filetxt).
$SUDO apt-get install -y --no-install-recommends slurm-wlm munge

for exe in "${needed[@]}"; do
    command -v "$exe" >/dev/null 2>&1 || [ -x "/usr/sbin/$exe" ] \
        || { echo "install-slurm: $exe still missing after install" >&2; exit 1; }
done
echo "install-slurm: installed $(slurm_version)"
