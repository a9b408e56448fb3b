#!/usr/bin/env bash
# Installs (idempotently) the headless browser of the real-browser tests
# (tests/python/browser.py): Debian's `chromium` and `chromium-driver` packages, which provide
# /usr/bin/chromium and /usr/bin/chromedriver of the same version.
#
#   scripts/browser.sh
#
# Does nothing when both files exist. Otherwise runs
# `apt-get install -y --no-install-recommends chromium chromium-driver`, and `apt-get update`
# plus a second install only if the first one fails (a fresh machine has no package lists).
# Uses sudo only when not root. Progress goes to stderr; stdout stays empty. Exits non-zero,
# saying why, when the browser cannot be installed.
set -euo pipefail

chromium=/usr/bin/chromium
chromedriver=/usr/bin/chromedriver
packages=(chromium chromium-driver)

if [[ -x "$chromium" && -x "$chromedriver" ]]; then
    exit 0
fi

fail() { echo "browser.sh: $*" >&2; exit 1; }

missing=()
for f in "$chromium" "$chromedriver"; do
    [[ -x "$f" ]] || missing+=("$f")
done
echo "browser.sh: ${missing[*]} missing; installing Debian packages: ${packages[*]}" >&2

command -v apt-get >/dev/null || fail "apt-get not found: install ${packages[*]} (Debian packages) by hand"
sudo=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || fail "not root and sudo is missing: run as root, or install ${packages[*]} by hand"
    sudo=(sudo -n)
fi

apt_install() {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${packages[@]}" >&2
}

if ! apt_install; then
    echo "browser.sh: install failed; running apt-get update and trying again" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 \
        || fail "apt-get update failed"
    apt_install || fail "apt-get install ${packages[*]} failed"
fi

for f in "$chromium" "$chromedriver"; do
    [[ -x "$f" ]] || fail "$f is still missing after installing ${packages[*]}"
done
echo "browser.sh: installed $("$chromedriver" --version 2>/dev/null | head -n1)" >&2
