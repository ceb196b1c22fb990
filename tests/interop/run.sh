#!/usr/bin/env bash
# Interop: clients nobody here wrote talk to our server.
#   - Python's `websockets` chats through /ws (and /) and echoes through
#     /echo, including a 1 MiB binary message;
#   - Python's `httpx-sse` reads /events, and resumes with Last-Event-ID.
# It installs them itself, into a virtual environment under target/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/interop-venv"

if ! "$venv/bin/python" -c 'import websockets, httpx_sse' 2>/dev/null; then
  echo "interop: creating $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'websockets==17.4' 'httpx==0.28.1' 'httpx-sse==0.4.3'
fi

cargo build --quiet --manifest-path "$root/Cargo.toml" --bin realtime-by-hand
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$root/target/debug/realtime-by-hand" --host 127.0.0.1 --port 0 --tick-secs 0 >"$work/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 1 100); do
  port="$(grep -o -m1 '127\.0\.0\.1:[0-9]*' "$work/server.log" 2>/dev/null | cut -d: -f2 || true)"
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -z "$port" ]; then echo "interop: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; fi

if ! timeout 120 "$venv/bin/python" "$here/interop.py" "$port"; then
  echo "interop: FAILED; the server's log:" >&2
  tail -40 "$work/server.log" >&2
  exit 1
fi
