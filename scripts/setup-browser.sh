#!/usr/bin/env bash
# Make sure a Chromium for the end-to-end browser tests is at /usr/bin/chromium.
#
# Playwright's own browser download does not work everywhere (no internet but the package
# registries), so the tests drive Debian's chromium package through Playwright's Python driver.
# Installs it with apt-get when it is missing and we are root; otherwise says what to do.
set -euo pipefail

CHROMIUM=${VIZDEBUG_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "setup-browser: $CHROMIUM is missing; install Chromium (e.g. 'sudo apt-get install -y chromium')" >&2
    echo "setup-browser: the browser tests are skipped without it (and fail under CI=true)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-browser: no apt-get here; install Chromium at $CHROMIUM yourself" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
"$CHROMIUM" --version
