# Sourced by tests/cluster/run.sh and tests/cluster/redis.sh: installs
# Debian packages (redis-server, nginx) without letting them start the
# system-wide services they would start as they install (nginx on port 80).
# The tests never use such a service; they start their own processes.
#
#   source tests/cluster/packages.sh
#   install_packages redis-server nginx
#
# Needs say() from the caller, and runs as root (CI does). A policy-rc.d
# that forbids every start (exit 101) keeps the services down for as long
# as the install runs; it is removed afterwards, and on any exit, by
# packages_cleanup, which the caller's EXIT trap calls.

policy_made=""
packages_cleanup() {
  if [ -n "$policy_made" ]; then rm -f "$policy_made"; policy_made=""; fi
}

install_packages() {
  if [ "$(id -u)" != 0 ]; then
    say "$* not installed, and installing needs root (apt-get install $*)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_made=/usr/sbin/policy-rc.d
  fi
  # (Read whole before grep looks: under pipefail, grep -q leaving early
  # would fail the pipe.)
  local known
  known="$(apt-cache policy "$@" 2>/dev/null || true)"
  if [ "$(grep -c 'Candidate: [0-9]' <<<"$known")" -lt "$#" ]; then
    say "apt-get update (the package lists do not know $* yet)"
    apt-get update -qq
  fi
  say "installing $* with apt-get"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  packages_cleanup
  # Had a service started all the same (a policy-rc.d of someone else's
  # allowing it), stop it at once through its own init script.
  if command -v service >/dev/null 2>&1; then
    if [ -f /run/redis/redis-server.pid ]; then service redis-server stop >/dev/null 2>&1 || true; fi
    if [ -f /run/nginx.pid ]; then service nginx stop >/dev/null 2>&1 || true; fi
  fi
}
