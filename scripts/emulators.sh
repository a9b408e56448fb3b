#!/usr/bin/env bash
# Installs (idempotently) the object-storage emulators that come from npm, for the Python
# tests (tests/python/emulators.py calls this), and prints their bin directory.
#
#   scripts/emulators.sh            -> <dir>/node_modules/.bin (azurite-blob, ...)
#   scripts/emulators.sh s3s-fs     -> path of the s3s-fs binary (S3 server that checks
#                                      SigV4 signatures and expiry of pre-signed URLs)
#
# npm packages: versions pinned in scripts/emulators/package.json and package-lock.json,
# installed with `npm ci` into ${D2O_NPM_CACHE:-$HOME/.cache/d2o-npm}; reinstalled only when
# the lock file's sha256 differs from the one recorded after the last successful install.
# s3s-fs: `cargo install s3s-fs@$S3S_FS_VERSION` into ${D2O_TOOLS:-$HOME/.cache/d2o-tools}
# (compiles for a few minutes the first time). The moto and GCS emulators come from PyPI
# (tests/python/requirements.txt). Progress goes to stderr; stdout is only the path.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$repo_root/scripts/emulators"
S3S_FS_VERSION="0.14.1"

case "${1:-npm}" in
npm)
    dest="${D2O_NPM_CACHE:-$HOME/.cache/d2o-npm}"
    stamp="$dest/.d2o-package-lock.sha256"
    command -v npm >/dev/null || { echo "emulators.sh: npm (Node.js >= 18) is required" >&2; exit 1; }
    want="$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dest/node_modules/.bin/azurite-blob" ]]; then
        echo "$dest/node_modules/.bin"
        exit 0
    fi
    echo "emulators.sh: installing npm emulators into $dest" >&2
    mkdir -p "$dest"
    rm -f "$stamp"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
    echo "$want" >"$stamp"
    echo "$dest/node_modules/.bin"
    ;;
s3s-fs)
    root="${D2O_TOOLS:-$HOME/.cache/d2o-tools}"
    bin="$root/bin/s3s-fs"
    if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -qF "$S3S_FS_VERSION"; then
        echo "$bin"
        exit 0
    fi
    command -v cargo >/dev/null || { echo "emulators.sh: cargo is required to build s3s-fs" >&2; exit 1; }
    echo "emulators.sh: building s3s-fs $S3S_FS_VERSION into $root (a few minutes)" >&2
    # its own target dir: never the workspace's build directory
    CARGO_TARGET_DIR="$root/target" cargo install --locked "s3s-fs@$S3S_FS_VERSION" \
        --features binary --root "$root" >&2
    echo "$bin"
    ;;
*)
    echo "usage: $0 [npm|s3s-fs]" >&2
    exit 2
    ;;
esac
