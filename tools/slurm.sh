#!/usr/bin/env bash
# Debian's Slurm (slurmctld, slurmd, the clients) and munge for the cluster tests
# (tests/slurm.rs), installed when missing (root: apt-get). The tests start the daemons
# themselves, on loopback ports, from a slurm.conf they write (never the system's).
#
# Idempotent and safe to start twice at once (a lock): `.ci/run` starts it in the background
# while cargo builds; tests/slurm.rs runs it again, which waits on the lock and finds it done.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/.dctk"
exec 9>"$root/.dctk/slurm.lock"
flock 9
if ! { command -v slurmctld && command -v slurmd && command -v munged && command -v sbatch; } >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "tools/slurm.sh: Slurm is missing and installing it needs root: apt-get install slurmctld slurmd slurm-client munge" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  pkgs="slurmctld slurmd slurm-client munge"
  apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends $pkgs >/dev/null 2>&1 \
    || { apt-get update -o DPkg::Lock::Timeout=600 -qq && apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends $pkgs >/dev/null; }
fi
slurmctld -V
