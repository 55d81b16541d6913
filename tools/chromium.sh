#!/usr/bin/env bash
# Debian's headless Chromium for the report tests (tests/report.rs): installs the `chromium`
# package when /usr/bin/chromium is missing (root: apt-get), and prints its path.
#
# Idempotent and safe to start twice at once (a lock): `.ci/run` starts it in the background
# while cargo builds; the report test runs it again, which waits on the lock and finds it there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/.dctk"
exec 9>"$root/.dctk/chromium.lock"
flock 9
if ! [ -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tools/chromium.sh: /usr/bin/chromium is missing and installing it needs root: apt-get install chromium" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Retry once after refreshing the package lists (a stale list names deleted versions); wait for
  # dpkg's lock, which tools/slurm.sh may hold (.ci/run starts both at once).
  apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 \
    || { apt-get update -o DPkg::Lock::Timeout=600 -qq && apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
fi
echo /usr/bin/chromium
