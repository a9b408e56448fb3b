#!/usr/bin/env bash
# Create (idempotently) the virtualenv used by the Python compatibility tests
# (tests/python) and print its path.
#
#   D2O_BIN=target/release/d2o "$(scripts/python-env.sh)/bin/pytest" tests/python
#
# The venv lives at ${D2O_VENV:-$HOME/.cache/d2o-venv}. It is (re)populated
# from tests/python/requirements.txt only when that file's sha256 differs from
# the one recorded in the venv after the last successful install. Progress goes
# to stderr; stdout is only the venv path.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$repo_root/tests/python/requirements.txt"
venv="${D2O_VENV:-$HOME/.cache/d2o-venv}"
python="${PYTHON:-python3}"
stamp="$venv/.d2o-requirements.sha256"

if [[ ! -f "$req" ]]; then
    echo "python-env.sh: $req not found" >&2
    exit 1
fi

hash_file() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        "$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

want="$(hash_file "$req")"
have=""
if [[ -f "$stamp" ]]; then
    have="$(cat "$stamp")"
fi

if [[ -x "$venv/bin/python" && "$want" == "$have" ]]; then
    echo "$venv"
    exit 0
fi

# A venv whose interpreter is gone (e.g. python3 upgraded) is recreated.
if [[ -d "$venv" ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "python-env.sh: removing broken venv $venv" >&2
    rm -rf "$venv"
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "python-env.sh: creating venv $venv" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" >&2
fi

echo "python-env.sh: installing $req" >&2
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$req" >&2
# The "python3" Jupyter kernel of this venv, for the notebook test (nbclient).
"$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >&2
echo "$want" >"$stamp"
echo "$venv"
