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

# The packages, installed without their services (packages.sh says how).
source "$here/packages.sh"
trap packages_cleanup EXIT

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
