#!/usr/bin/env bash
# The browser test: Debian's Chromium drives the demo page (public/) against
# the real server. Installs what it needs itself. Playwright never downloads
# a browser here: playwright-core has no browser of its own, and the test
# points it at /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")"

command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund

(cd ../.. && cargo build)

node test.mjs "$@"
