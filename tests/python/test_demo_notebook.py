"""`d2o demo` in its serving mode, and the recipient notebook run against it.

The notebook (examples/d2o_example.ipynb) is executed headless with nbclient on the venv's
`python3` kernel, top to bottom as Jupyter would; any cell error fails the test. Its last cell
compares its pandas figures with the demo's `figures.json` and writes `summary.json` beside its
charts, which the test reads back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import REPO_ROOT, free_port, stop

NOTEBOOK = REPO_ROOT / "examples" / "d2o_example.ipynb"
CHARTS = {
    "amount_histogram.png",
    "transactions_boxplot.png",
    "revenue_timeseries.png",
    "top_customers.png",
    "customer_demographics.png",
    "revenue_by_segment.png",
}


def _wait_for_demo(proc: subprocess.Popen, figures: Path, health: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"d2o demo exited with {proc.returncode}"
        if figures.exists():
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"d2o demo did not serve within {timeout:.0f}s")


def _ensure_kernelspec() -> None:
    """The venv's `python3` kernel (scripts/python-env.sh installs it; this covers other venvs)."""
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    if not spec.exists():
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
            check=True, capture_output=True,
        )


def run_notebook(path: Path, cwd: Path) -> nbformat.NotebookNode:
    """Execute the notebook in a fresh kernel whose working directory is `cwd` (the kernel
    inherits this process's environment)."""
    nb = nbformat.read(path, as_version=4)
    _ensure_kernelspec()
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(cwd)}},
    )
    try:
        client.execute()
    except CellExecutionError as e:
        raise AssertionError(f"the notebook failed:\n{e}") from e
    return nb


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.get("output_type") == "stream"
    )


def test_the_notebook_runs_against_the_serving_demo(tmp_path: Path, monkeypatch):
    binary = os.environ["D2O_BIN"]
    port = free_port()
    demo = tmp_path / "d2o-demo"
    log = (tmp_path / "demo.log").open("w")
    # Serving is the default: the demo keeps the server up for the notebook.
    proc = subprocess.Popen(
        [binary, "demo", "--dir", str(demo), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(tmp_path),
    )
    try:
        _wait_for_demo(proc, demo / "figures.json", f"http://127.0.0.1:{port}/health", 120.0)
        # The notebook's default profile path (d2o-demo/.creds/config.share) is relative to
        # where the demo ran: no DELTA_SHARING_PROFILE, the kernel's working directory is tmp_path.
        out = tmp_path / "nb-out"
        monkeypatch.delenv("DELTA_SHARING_PROFILE", raising=False)
        monkeypatch.setenv("D2O_EXAMPLE_OUT", str(out))
        nb = run_notebook(NOTEBOOK, tmp_path)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["customers"] == 1000
        assert summary["sales"] == 6000
        assert summary["versions"][-1] == {"table": "sales", "version": 1, "rows": 6000}
        assert summary["checked_against_report"] is True
        assert "the notebook's figures equal the report's" in _stdout(nb)
        assert set(summary["charts"]) == CHARTS
        for name in CHARTS:
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        # the charts are displayed in the executed notebook too
        images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {})]
        assert len(images) == len(CHARTS)
    finally:
        stop(proc)
        log.close()
