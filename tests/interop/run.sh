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
# shellcheck source=../common/server.sh
source "$root/tests/common/server.sh"
start_server interop "$root/target/debug/realtime-by-hand" --tick-secs 0

if ! timeout 120 "$venv/bin/python" "$here/interop.py" "$port"; then
  echo "interop: FAILED; the server's log:" >&2
  tail -40 "$work/server.log" >&2
  exit 1
fi
