# Sourced by the shell test runners (autobahn, interop): starts the server
# on 127.0.0.1 and a free port, and stops it when the runner exits.
#
#   source tests/common/server.sh
#   start_server NAME BINARY [OPTIONS...]
#
# Sets $server_pid, $port and $work (a temporary directory, removed on
# exit, which holds the server's log as $work/server.log).

work="$(mktemp -d)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap stop_server EXIT

start_server() {
  local name="$1" binary="$2"
  shift 2
  "$binary" --host 127.0.0.1 --port 0 "$@" >"$work/server.log" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 1 100); do
    port="$(grep -o -m1 '127\.0\.0\.1:[0-9]*' "$work/server.log" 2>/dev/null | cut -d: -f2 || true)"
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "$name: the server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  echo "$name: server pid $server_pid on port $port"
}
