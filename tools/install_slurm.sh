#!/usr/bin/env bash
# Installs SLURM (slurmctld, slurmd, clients) and munge from Debian for tests/test_slurm.py, which starts
# a throwaway one-node cluster of its own (tests/slurm_cluster.py); nothing here configures or starts a daemon.
set -euo pipefail
if command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
  exit 0
fi
apt-get update -qq
# policy-rc.d 101: packages must not start their system daemons (there may be no init system at all).
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null
