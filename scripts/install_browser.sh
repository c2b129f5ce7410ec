#!/usr/bin/env bash
# Install headless Chromium for the test of `nmt serve`'s page (tests/integration/
# test_serve_browser.py), where the machine allows: Debian or Ubuntu with apt-get, as root or
# with password-less sudo. Anywhere else, or with NMT_NO_BROWSER=1, it does nothing and that
# test is skipped with its reason. Never fails the caller.
set -uo pipefail
for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$name" > /dev/null 2>&1; then exit 0; fi
done
if [ -n "${NMT_CHROMIUM:-}" ] || [ "${NMT_NO_BROWSER:-0}" = 1 ]; then exit 0; fi
if ! command -v apt-get > /dev/null 2>&1; then
  echo "install_browser: no apt-get; the browser test will be skipped" >&2; exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2> /dev/null; then sudo="sudo -n"; else
    echo "install_browser: not root; the browser test will be skipped" >&2; exit 0
  fi
fi
echo "install_browser: installing chromium with apt-get (once; about 300 MB)" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y \
    --no-install-recommends chromium; } > "$log" 2>&1; then
  tail -n 5 "$log" >&2
  echo "install_browser: chromium could not be installed; the browser test will be skipped" >&2
fi
exit 0
