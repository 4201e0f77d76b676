#!/usr/bin/env bash
# The browser test's prerequisites (tests/web/test_web_page.py): Debian's chromium (puppeteer's
# own browser download needs a CDN CI cannot reach) and the test driver puppeteer-core, pinned by
# tests/web/package-lock.json, installed with `npm ci` into tests/web/node_modules. Idempotent:
# no apt or npm traffic when both are in place. Debian/Ubuntu, as root or with passwordless sudo.
# Fails (non-zero, one line on stderr) when anything is missing at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-browser: need root or sudo" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# npm runs the page's vendoring rule (llm2tflite/web/package-lock.json) and this script.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "install-browser: chromium and npm already installed"
fi

# The lock file's hash is kept beside node_modules: a changed lock reinstalls.
lock_hash=$(sha256sum tests/web/package-lock.json | cut -d' ' -f1)
stamp=tests/web/node_modules/.llm2tflite-lock-sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ]; then
    echo "install-browser: tests/web/node_modules up to date"
else
    (cd tests/web && npm ci --no-audit --no-fund)
    echo "$lock_hash" >"$stamp"
fi

# Loudly, here rather than in the tests: a browser that does not start (a snap stub, missing
# libraries) or a driver that did not install.
fail() { echo "install-browser: error: $*" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1 ||
    fail "chromium is installed but does not start headless ($(command -v chromium))"
command -v node >/dev/null 2>&1 || fail "node is missing after installing nodejs"
[ -f tests/web/node_modules/puppeteer-core/package.json ] ||
    fail "tests/web/node_modules/puppeteer-core is missing after npm ci"
echo "install-browser: $(chromium --version 2>/dev/null), node $(node --version), npm $(npm --version)"
