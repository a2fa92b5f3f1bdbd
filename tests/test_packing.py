"""benchmarks/packing.py keeps running: k trials packed on one device through Ray's fractional
resources (the GPU case is measured where a GPU is lent; here the CPU path, as a smoke)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_the_packing_benchmark_runs_k_trials_at_once_and_reports_each_k(tmp_path):
    out = tmp_path / "packing.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "packing.py"), "--device",
                           "cpu", "--k", "1", "2", "--steps", "2", "--n-layer", "1",
                           "--n-embd", "32", "--n-head", "2", "--context", "32", "--batch", "4",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["k"] for r in rows] == [1, 2]
    assert rows[0]["vs_alone"] == 1.0
    # two trials of the same steps trained twice the tokens, in one overlapping window
    assert rows[1]["tokens"] == 2 * rows[0]["tokens"] and rows[1]["wall_s"] > 0
