#!/usr/bin/env bash
# Runs the cluster tests (the #[ignore]d ones in tests/cluster.rs): three
# instances of the server sharing one event log in Redis, with nginx in
# front. The tests start every process themselves, on free ports of
# 127.0.0.1, in temporary directories, and stop them by their pids; this
# script only makes sure the two programs are there:
#   1. installs redis-server and nginx with apt-get if either is missing
#      (as root), without letting the packages start their system services;
#   2. runs `cargo test --release --test cluster -- --ignored
#      --test-threads 1 --nocapture` with REDIS_SERVER and NGINX set;
#   3. runs the browser test's cluster part (tests/browser/run.sh
#      --cluster-only): the demo page through nginx, in Chromium.
# One test at a time: each starts five processes, on a small machine.
#
#   tests/cluster/run.sh
#   tests/cluster/run.sh resume      (extra arguments go to the test binary:
#                                     here, only the tests whose names
#                                     contain "resume")
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

say() { echo "cluster/run.sh: $*"; }

# Cleanup, run on every exit: only what this script made.
policy_made=""
cleanup() {
  if [ -n "$policy_made" ]; then rm -f "$policy_made"; fi
}
trap cleanup EXIT

# 1. The packages. Debian's redis-server and nginx would each start a
# system-wide service as they install (nginx on port 80). A policy-rc.d
# that forbids every start (exit 101) prevents that for as long as the
# install runs; the tests never use such a service.
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
  if [ -n "$policy_made" ]; then rm -f "$policy_made"; policy_made=""; fi
  # Had a service started all the same (a policy-rc.d of someone else's
  # allowing it), stop it at once through its own init script.
  if command -v service >/dev/null 2>&1; then
    if [ -f /run/redis/redis-server.pid ]; then service redis-server stop >/dev/null 2>&1 || true; fi
    if [ -f /run/nginx.pid ]; then service nginx stop >/dev/null 2>&1 || true; fi
  fi
}
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# nginx lives in /usr/sbin, which a user's PATH may lack.
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx_bin" ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
  install_packages "${missing[@]}"
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
say "$(redis-server --version)"
say "$("$nginx_bin" -v 2>&1)"

# 2. The tests, optimised: the load test posts 10,000 events, and the
# latency figures should be the server's, not a debug build's.
REDIS_SERVER="$(command -v redis-server)" NGINX="$nginx_bin" \
  cargo test --release --manifest-path "$root/Cargo.toml" --test cluster -- \
  --ignored --test-threads 1 --nocapture "$@"

# 3. The demo page through nginx in front of three instances, in Chromium
# (tests/browser/test.mjs --cluster-only starts its own Redis, instances
# and nginx with the programs found above).
REDIS_SERVER="$(command -v redis-server)" NGINX="$nginx_bin" \
  "$root/tests/browser/run.sh" --cluster-only
