#!/usr/bin/env bash
# Runs the tests of the Redis client and the cluster's event log that need
# a real Redis (the #[ignore]d ones in tests/redis.rs), against a
# redis-server of its own:
#   1. installs redis-server with apt-get if it is missing (as root), and
#      keeps the package from starting a service of its own;
#   2. starts redis-server on a free port of 127.0.0.1, with nothing saved
#      to disk, in a temporary directory;
#   3. runs `cargo test --test redis -- --ignored` with REDIS_URL set;
#   4. stops the server it started (by its pid) and removes the directory,
#      however the script ends.
#
#   tests/cluster/redis.sh
#   tests/cluster/redis.sh --nocapture      (extra arguments go to the test binary)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

say() { echo "redis.sh: $*"; }

# Cleanup, run on every exit: only what this script made.
work=""
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  packages_cleanup
  if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# 1. redis-server, installed without its service (packages.sh says how).
source "$here/packages.sh"
if ! command -v redis-server >/dev/null 2>&1; then
  install_packages redis-server
fi
say "$(redis-server --version)"

# 2. A server of our own. A port is free when nothing answers there; should
# another process take it first, redis-server exits and the next is tried.
work="$(mktemp -d)"
port_is_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
is_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && grep -q 'Ready to accept connections' "$work/redis.log" 2>/dev/null; }
port=""
for _ in 1 2 3 4 5; do
  candidate=$(( 20000 + RANDOM % 20000 ))
  if port_is_taken "$candidate"; then continue; fi
  redis-server --port "$candidate" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" --daemonize no --logfile "$work/redis.log" &
  redis_pid=$!
  for _ in $(seq 1 100); do
    if is_ready "$candidate"; then port="$candidate"; break; fi
    if ! kill -0 "$redis_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -n "$port" ]; then break; fi
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=""
done
if [ -z "$port" ]; then
  say "redis-server did not start; its log:" >&2
  cat "$work/redis.log" >&2 2>/dev/null || true
  exit 1
fi
say "redis-server pid $redis_pid on 127.0.0.1:$port"

# 3. The tests.
REDIS_URL="redis://127.0.0.1:$port" \
  cargo test --quiet --manifest-path "$root/Cargo.toml" --test redis -- --ignored "$@"
REDIS_URL="redis://127.0.0.1:$port" \
  cargo test --quiet --manifest-path "$root/Cargo.toml" --test broker -- --ignored "$@"
