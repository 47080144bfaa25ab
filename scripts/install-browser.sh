#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the browser tests (the prediction page, the console)
# where they are missing. Needs root and apt-get; without them the browser tests skip with one line.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-browser: chromium and chromedriver are missing and cannot be installed here" \
        "(needs root and apt-get); the browser tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
    || echo "install-browser: apt-get could not install chromium; the browser tests will be skipped" >&2
