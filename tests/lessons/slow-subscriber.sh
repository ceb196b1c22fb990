#!/usr/bin/env bash
# Lesson 05's slow subscriber, reproduced every time.
#
# A reader that stops reading is not enough on loopback: the kernel's
# socket buffers there take megabytes, and a burst of events disappears
# into them. So the slow reader makes its receive buffer small (SO_RCVBUF
# before connect), and the burst is 200 events of 60 KB, far more than the
# buffers can hold. The server runs with a small --queue, so that a stream
# more than a few events behind is let go. What happens is printed step by
# step by slow_subscriber.py, which also fails (exit 1) if a step does not
# happen.
#
#   tests/lessons/slow-subscriber.sh
#
# The server listens on 127.0.0.1 and a port the kernel picks, and is
# stopped by its pid however the script ends.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
server="$root/target/debug/realtime-by-hand"
queue=8

if [ ! -x "$server" ]; then
  cargo build --quiet --manifest-path "$root/Cargo.toml"
fi

# The server on a free port of 127.0.0.1, stopped on exit (tests/common/server.sh).
source "$root/tests/common/server.sh"
# --write-timeout-secs 30: the stream must end for being behind, not
# because a write to the stalled reader took too long (10 s by default).
# (start_server's own line names the pid, which changes every run: the
# line below says the same without it.)
start_server slow-subscriber "$server" --tick-secs 0 --queue "$queue" --write-timeout-secs 30 >/dev/null
echo "server: 127.0.0.1:$port, --queue $queue --tick-secs 0 --write-timeout-secs 30"
python3 "$here/slow_subscriber.py" "$port" "$server_pid" "$work/server.log" "$queue"
