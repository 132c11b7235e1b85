#!/usr/bin/env bash
# The headless browser the studio's end-to-end test drives: Debian's chromium and chromium-driver
# (nothing downloads a browser of its own). Installed with apt when missing (as root, or with sudo).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "tora2: chromium and chromium-driver are missing and this user cannot install them; run as root: apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "tora2: installed $(chromium --version 2>/dev/null | head -1)"
