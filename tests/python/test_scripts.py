"""Static checks of the repository's scripts (no build, no server):

- every scripts/*.sh and .ci/run parses (`bash -n`);
- scripts/run-d2o-demo.ps1 has balanced braces, parentheses and brackets outside strings and
  comments, and builds with cargo then runs `d2o demo` (pwsh is not installed where this suite
  runs, so it is not parsed by PowerShell itself);
- the Dockerfile builds d2o-cli in release and runs `d2o`.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SHELL_SCRIPTS = sorted((REPO_ROOT / "scripts").glob("*.sh")) + [REPO_ROOT / ".ci" / "run"]
PS1 = REPO_ROOT / "scripts" / "run-d2o-demo.ps1"


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shell_script_parses(script: Path):
    assert script.exists(), script
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _code_only(text: str) -> str:
    """PowerShell source without comments (`# ...`, `<# ... #>`) and string literal contents."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("<#", i):
            end = text.find("#>", i + 2)
            assert end >= 0, "unterminated <# block comment"
            i = end + 2
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in "'\"":
            j = i + 1
            while True:
                assert j < n, f"unterminated string starting at offset {i}"
                if text[j] == "`" and c == '"':
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # '' or "" escapes the quote
                        j += 2
                        continue
                    break
                j += 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _balanced(code: str) -> bool:
    pairs = {")": "(", "}": "{", "]": "["}
    stack = []
    for c in code:
        if c in "({[":
            stack.append(c)
        elif c in pairs:
            if not stack or stack.pop() != pairs[c]:
                return False
    return not stack


def test_balance_checker_itself():
    assert _balanced(_code_only("if ($a) { Write-Host ')' } # (\n"))
    assert not _balanced(_code_only("if ($a) { Write-Host '}' \n"))


def test_powershell_demo_script_is_well_formed():
    text = PS1.read_text()
    code = _code_only(text)
    assert _balanced(code), "unbalanced (), {} or [] in run-d2o-demo.ps1"
    assert re.search(r"&\s*cargo\s+build\s+--locked\s+-p\s+d2o-cli", code)
    assert re.search(r"&\s*\$d2o\s+demo\s+@args", code)


def test_dockerfile_builds_and_runs_d2o():
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM rust:1\.95-slim AS builder", text, re.M)
    assert "cargo build --profile dist --locked -p d2o-cli" in text
    assert "target/dist/d2o /usr/local/bin/d2o" in text
    # The profile it names exists, and is the release one with link-time optimisation.
    cargo = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())
    dist = cargo["profile"]["dist"]
    assert dist["inherits"] == "release" and dist["lto"] == "fat" and dist["codegen-units"] == 1
    # Every crate of the recipient's SQL engine is built for size (the binary-size target rests on
    # it): a DataFusion upgrade that adds a crate must add it to the profile too.
    lock = tomllib.loads((REPO_ROOT / "Cargo.lock").read_text())
    engine = {p["name"] for p in lock["package"] if p["name"].startswith(("datafusion", "sqlparser"))}
    sized = {name for name, opts in dist.get("package", {}).items() if opts.get("opt-level") == "z"}
    assert engine and engine <= sized, f"not built for size: {sorted(engine - sized)}"
    assert re.search(r"^FROM debian:bookworm-slim", text, re.M)
    assert re.search(r"^EXPOSE 8080", text, re.M)
    assert re.search(r'^ENTRYPOINT \["d2o"\]', text, re.M)
    assert re.search(r"^USER ", text, re.M)
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    assert "demo --dir /data/d2o-demo --port 8080" in compose or (
        "/data/d2o-demo" in compose and "8080" in compose
    )
    assert "DELTA_SHARING_PROFILE" in compose
