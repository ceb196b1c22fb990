#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against our /echo endpoint and
# fails unless every case is OK or INFORMATIONAL.
#
# It installs what it needs: the suite (pip, under the Python 2.7 that pyenv
# provides on these machines). Sections 12 and 13 (permessage-deflate) are
# excluded: the server declines compression on purpose.
#
#   tests/autobahn/run.sh            # build, install, run, summarize
#   REPORT_DIR=/tmp/ab tests/autobahn/run.sh
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

# 3. The server, optimized (section 9 sends messages of up to 16 MiB).
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin realtime-by-hand
# shellcheck source=../common/server.sh
source "$root/tests/common/server.sh"
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

# 5. The verdict.
python3 "$here/summarize.py" "$report_dir/index.json"
