#!/usr/bin/env bash
# Install a single-node-capable Slurm (slurmctld + slurmd + client tools) and
# munge from the distribution's packages. Idempotent: does nothing (no apt
# traffic) when everything is already installed. Intended for CI images
# (Debian/Ubuntu, run as root or with passwordless sudo).
#
# Used by tests/workflow/test_slurm.py via tests/slurm/cluster.sh, which starts the
# daemons itself (no systemd needed).
set -euo pipefail
source "$(dirname "$0")/install-tools.sh"  # missing_executables, apt_install

# (sbatch --version would need a slurm.conf; ask dpkg instead)
slurm_version() { dpkg-query -W -f='slurm-wlm ${Version}' slurm-wlm 2>/dev/null || echo "slurm (version unknown)"; }

needed=(sbatch squeue sinfo scontrol scancel slurmctld slurmd munged munge)
mapfile -t missing < <(missing_executables "${needed[@]}")
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-slurm: slurm and munge already installed ($(slurm_version))"
    exit 0
fi
echo "install-slurm: missing: ${missing[*]}"

# slurm-wlm pulls slurmctld, slurmd and slurm-client; --no-install-recommends
# keeps the image small (no slurmdbd/mariadb; the tests use jobcomp/filetxt).
apt_install slurm-wlm munge

mapfile -t missing < <(missing_executables "${needed[@]}")
if [ "${#missing[@]}" -ne 0 ]; then
    echo "install-slurm: ${missing[*]} still missing after install" >&2
    exit 1
fi
echo "install-slurm: installed $(slurm_version)"
