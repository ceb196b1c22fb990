#!/usr/bin/env bash
# Runs Autobahn|Testsuite both ways and fails unless every case of both
# runs is OK or INFORMATIONAL:
#   - the server: the suite's fuzzing client against our /echo endpoint;
#   - the client: the suite's fuzzing server, with `ws-client --echo` as
#     the client under test, one process per case.
#
# It installs what it needs: the suite (pip, under the Python 2.7 that pyenv
# provides on these machines). Sections 12 and 13 (permessage-deflate) are
# excluded: neither side offers or accepts compression, on purpose.
#
#   tests/autobahn/run.sh            # build, install, run, summarize
#   REPORT_DIR=/tmp/ab tests/autobahn/run.sh
#
# The server's report is REPORT_DIR/index.html, the client's
# REPORT_DIR/client/index.html (with ws-client.log, what it printed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
report_dir="${REPORT_DIR:-$here/reports}"

# 1. Python 2.7 (the suite has never been ported to Python 3).
python2=""
for candidate in "$(pyenv root 2>/dev/null)"/versions/2.7*/bin/python2.7 "$(command -v python2.7 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then python2="$candidate"; break; fi
done
if [ -z "$python2" ]; then
  echo "autobahn: no Python 2.7 found (looked in pyenv and PATH); install one with 'pyenv install 2.7.18'" >&2
  exit 1
fi

# 2. The suite, into the user site of that Python.
wstest="$("$python2" -c 'import site; print(site.USER_BASE)')/bin/wstest"
if ! "$wstest" --autobahnversion >/dev/null 2>&1; then
  echo "autobahn: installing autobahntestsuite with $python2"
  "$python2" -m pip install --user --quiet --disable-pip-version-check 'autobahntestsuite==25.10.1' 2>&1 \
    | grep -v -i -e 'deprecat' -e 'python 2.7' || true
fi
"$wstest" --autobahnversion

# 3. The server and the client, optimized (section 9 sends messages of up
# to 16 MiB).
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin realtime-by-hand --bin ws-client
client="$root/target/release/ws-client"
# shellcheck source=../common/server.sh
source "$root/tests/common/server.sh"
# The fuzzing server (step 6) is stopped on exit too, before the temporary
# directory goes.
fuzz_pid=""
stop_all() {
  if [ -n "$fuzz_pid" ]; then kill "$fuzz_pid" 2>/dev/null || true; wait "$fuzz_pid" 2>/dev/null || true; fi
  stop_server
}
trap stop_all EXIT
start_server autobahn "$root/target/release/realtime-by-hand" --quiet --no-inspect --tick-secs 0

# 4. The run. The spec is the committed one, with the port filled in.
# Only ever delete a directory that holds an earlier report.
if [ -e "$report_dir" ] && [ ! -f "$report_dir/index.json" ] && [ -n "$(ls -A "$report_dir")" ]; then
  echo "autobahn: $report_dir exists and is not an Autobahn report; choose another REPORT_DIR" >&2
  exit 1
fi
rm -rf "$report_dir"
mkdir -p "$report_dir"
sed -e "s/PORT/$port/" -e "s#\"./reports\"#\"$report_dir\"#" "$here/fuzzingclient.json" >"$work/spec.json"
started=$(date +%s)
(cd "$work" && timeout 900 "$wstest" -m fuzzingclient -s "$work/spec.json" >"$work/wstest.log" 2>&1) || {
  echo "autobahn: wstest failed or timed out; last lines:" >&2
  tail -20 "$work/wstest.log" >&2
  exit 1
}
echo "autobahn: finished in $(( $(date +%s) - started )) s; report: $report_dir/index.html"

# 5. The server's verdict. Kept, not acted on yet: the client runs either way.
verdict=0
python3 "$here/summarize.py" "$report_dir/index.json" || verdict=1
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""

# 6. The client. `wstest -m fuzzingserver` serves the cases; a client asks
# /getCaseCount for their number, runs each on its own connection to
# /runCase?case=N&agent=A, and asks /updateReports?agent=A for the report.
# The suite listens on every interface and has no option against it;
# listenWS is wrapped so it binds 127.0.0.1 only, and --webport 0 turns off
# its web page on port 8080.
client_dir="$report_dir/client"
mkdir -p "$client_dir"
fuzz_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sed -e "s/PORT/$fuzz_port/" -e "s#\"./reports/client\"#\"$client_dir\"#" "$here/fuzzingserver.json" >"$work/server-spec.json"
(cd "$work" && exec "$python2" -c '
import sys
from autobahntestsuite import fuzzing, wstest
listen = fuzzing.listenWS
fuzzing.listenWS = lambda factory, context=None: listen(factory, context, interface="127.0.0.1")
sys.argv[0] = "wstest"
sys.exit(wstest.run())
' -m fuzzingserver -s "$work/server-spec.json" --webport 0 >"$work/fuzzingserver.log" 2>&1) &
fuzz_pid=$!
for _ in $(seq 1 100); do
  grep -q 'Fuzzing Server (Port' "$work/fuzzingserver.log" 2>/dev/null && break
  kill -0 "$fuzz_pid" 2>/dev/null || break
  sleep 0.1
done
url="ws://127.0.0.1:$fuzz_port"
agent="ws-client"
count="$(timeout 10 "$client" --print-first "$url/getCaseCount" 2>>"$client_dir/ws-client.log" || true)"
if ! [[ "$count" =~ ^[0-9]+$ ]] || [ "$count" -eq 0 ]; then
  echo "autobahn: the fuzzing server gave no case count (got '$count'); its log:" >&2
  tail -20 "$work/fuzzingserver.log" >&2
  exit 1
fi
echo "autobahn: fuzzing server pid $fuzz_pid on port $fuzz_port, $count client cases"
# Each case is bounded, and so is the whole loop: a client that hangs costs
# 20 s a case at most, and the run gives up after 150 s.
started=$(date +%s)
timeouts=0
for case in $(seq 1 "$count"); do
  if [ $(( $(date +%s) - started )) -gt 150 ]; then
    echo "autobahn: client cases still running after 150 s; stopped before case $case" >&2
    verdict=1
    break
  fi
  echo "== case $case" >>"$client_dir/ws-client.log"
  status=0
  timeout 20 "$client" --echo "$url/runCase?case=$case&agent=$agent" 2>>"$client_dir/ws-client.log" || status=$?
  # Exit status 1 is a case where the client failed the connection, which
  # many cases ask for; the report judges it. 124 is the timeout.
  if [ "$status" -eq 124 ]; then
    timeouts=$((timeouts + 1))
    echo "ws-client: killed after 20 s" >>"$client_dir/ws-client.log"
  fi
done
timeout 60 "$client" --echo "$url/updateReports?agent=$agent" 2>>"$client_dir/ws-client.log" || {
  echo "autobahn: /updateReports failed; the fuzzing server's log:" >&2
  tail -20 "$work/fuzzingserver.log" >&2
  exit 1
}
echo "autobahn: client cases finished in $(( $(date +%s) - started )) s ($timeouts timed out); report: $client_dir/index.html"

# 7. The client's verdict, and the run's.
python3 "$here/summarize.py" "$client_dir/index.json" --name "$agent" --expect "$count" || verdict=1
exit "$verdict"
