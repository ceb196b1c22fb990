#!/usr/bin/env bash
# Re-runs every session the lessons show (gdb, curl, cargo test) and
# rewrites those blocks, or checks them:
#
#   tests/lessons/capture.sh               rewrite the marked blocks in lessons/
#   tests/lessons/capture.sh --check       exit 1, with a diff naming the chapter
#                                          and the block, when any differs
#   tests/lessons/capture.sh --only NAME   one recipe (repeatable; with --print,
#                                          shows it and changes nothing)
#
# A block is marked by the line `<!-- capture: NAME -->` right before its
# fence; NAME is a recipe in capture.py, which says how the session is run
# and what is made the same every time (toolchain paths, addresses, thread
# ids, ports, timestamps, durations). Line numbers in src/ are kept: a line
# that moved makes the check fail, and the fix is to run this script and
# read the diff it made.
#
# Installs gdb and curl with apt-get when they are missing (as root), and
# builds first. Every server it starts listens on 127.0.0.1 and a port the
# kernel picks, and is stopped by its pid.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

say() { echo "capture.sh: $*"; }

install() {
  if [ "$(id -u)" != 0 ]; then
    say "$* missing, and installing needs root: apt-get install $*" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  say "installing $* with apt-get"
  if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
    say "apt-get update (the package lists do not know $* yet)"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  fi
}
missing=()
command -v gdb >/dev/null 2>&1 || missing+=(gdb)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then install "${missing[@]}"; fi
if ! command -v rust-gdb >/dev/null 2>&1; then
  say "rust-gdb is missing: it comes with rustup's toolchain" >&2
  exit 1
fi

# The unit tests (which some recipes run and debug) are built by the
# recipes; the server last, with the dev profile, so that target/debug/
# holds the unoptimised build the chapters debug (lesson 16 says why).
cd "$root"
cargo test --lib --no-run --quiet 2>/dev/null || cargo test --lib --no-run
cargo test --lib --no-run --quiet --config profile.test.opt-level=0 2>/dev/null ||
  cargo test --lib --no-run --config profile.test.opt-level=0
cargo build --quiet --bins

exec python3 "$here/capture.py" "$@"
