#!/usr/bin/env python3
"""What the `d2o` binary is made of: its stripped size, its sections, and its machine code per crate.

    python3 bench/binary_size.py [--profile dist] [--config 'profile.dist.opt-level="z"']...
    python3 bench/binary_size.py --binary PATH   # an unstripped d2o built elsewhere

Builds `d2o` with the profile (default `dist`: fat LTO, one codegen unit) *without* stripping
(`--config profile.<p>.strip=false`, which changes no code), so that its symbols can be counted,
then strips a copy with binutils' `strip` to report the size that ships. The build's wall time
is reported too (with a warm target directory that is the time of no build). Machine code is
attributed to a crate by the leading path of each demangled function symbol (`nm -S -C`), as
cargo-bloat does roughly:
a generic function goes to the crate that defines it (`core::ptr::drop_in_place<arrow::...>` is
`core`), a blanket implementation (`<T as ...>`) to "generic impls", C code to "C". Inlined
code counts where it was inlined. Writes bench/results/binary-size-<profile>.json.

Needs cargo, binutils (`nm`, `strip`, `size`) and a target directory ($CARGO_TARGET_DIR, default
~/.cache/d2o-target; give each profile experiment its own, the build takes about an hour here).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUST_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")


def build(profile: str, configs: list[str]) -> tuple[Path, float]:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "d2o-target"))
    cmd = ["cargo", "build", "--locked", "--profile", profile, "-p", "d2o-cli",
           "--config", f"profile.{profile}.strip=false"]
    for c in configs:
        cmd += ["--config", c]
    print("binary_size:", " ".join(cmd), file=sys.stderr)
    started = time.monotonic()
    subprocess.run(cmd, cwd=REPO, check=True)
    out = "debug" if profile == "dev" else profile
    return target / out / "d2o", time.monotonic() - started


def sections(binary: Path) -> dict[str, int]:
    out = subprocess.run(["size", "-A", str(binary)], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            found[parts[0]] = int(parts[1])
    return found


def crate_of(symbol: str) -> str:
    name = symbol.lstrip("<&*")
    for prefix in ("mut ", "const ", "dyn "):
        name = name.removeprefix(prefix)
    if re.match(r"[A-Z][A-Za-z0-9_]* as ", name):
        return "generic impls"
    m = RUST_PATH.match(name)
    return m.group(1) if m else "C"


def code_per_crate(binary: Path) -> collections.Counter:
    out = subprocess.run(["nm", "-S", "-C", "--defined-only", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    per_crate: collections.Counter = collections.Counter()
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in ("t", "T", "w", "W"):
            per_crate[crate_of(parts[3])] += int(parts[1], 16)
    return per_crate


def group(crate: str) -> str:
    if crate.startswith("datafusion") or crate == "sqlparser":
        return "DataFusion and sqlparser (the client's SQL)"
    if crate.startswith("arrow") or crate == "parquet":
        return "Arrow and Parquet"
    if crate.startswith("d2o"):
        return "d2o's own crates"
    if crate in ("core", "alloc", "std", "generic impls"):
        return "std and generic impls"
    if crate == "C":
        return "C (aws-lc, SQLite, zstd, jemalloc, ...)"
    return "other crates"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="dist")
    ap.add_argument("--config", action="append", default=[], help="extra cargo --config, repeatable")
    ap.add_argument("--binary", type=Path, help="analyse this unstripped binary instead of building")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    binary, seconds = (args.binary, None) if args.binary else build(args.profile, args.config)
    with tempfile.TemporaryDirectory() as tmp:
        stripped = Path(tmp) / "d2o"
        subprocess.run(["strip", "-o", str(stripped), str(binary)], check=True)
        size = stripped.stat().st_size
        secs = sections(stripped)
    per_crate = code_per_crate(binary)
    code = sum(per_crate.values())
    groups: collections.Counter = collections.Counter()
    for crate, n in per_crate.items():
        groups[group(crate)] += n

    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    print(f"stripped d2o: {size:,} bytes ({mb(size)}, {size / 2**20:.1f} MiB)")
    if seconds is not None:
        print(f"build: {seconds / 60:.1f} min wall")
    print("\nsections:")
    for name, n in sorted(secs.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {name:<20} {mb(n):>9}  {100 * n / size:5.1f} %")
    print(f"\nmachine code in function symbols: {mb(code)}")
    for name, n in groups.most_common():
        print(f"  {name:<46} {mb(n):>9}  {100 * n / code:5.1f} %")
    print("\nlargest crates:")
    for crate, n in per_crate.most_common(args.top):
        print(f"  {crate:<40} {mb(n):>9}  {100 * n / code:5.1f} %")

    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"binary-size-{args.profile}.json").write_text(json.dumps({
        "profile": args.profile, "configs": args.config, "stripped_bytes": size,
        "build_seconds": seconds, "sections": secs, "code_bytes": code,
        "groups": dict(groups), "crates": dict(per_crate.most_common()),
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
