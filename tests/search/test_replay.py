"""A trial exported from a search re-runs to the value it recorded, with no flag to remember."""

import subprocess
import sys

import pytest
from support.studies import tiny_lm_study

from autostage.cli import main
from autostage.rundir import RunDir


@pytest.mark.slow
def test_an_exported_trial_replays_to_its_recorded_value_by_default(ray_session, tmp_path):
    # two trials at once on 2 cores: each trains with one torch thread, where torch's default
    # here is two — which sums floats in another order (values differ from the 4th digit)
    (tmp_path / "study.toml").write_text(tiny_lm_study(
        "study.trials=2", "study.parallel=2", "model.n_embd=64", "model.batch_size=16",
        "stage.general.tokens=8192", "stage.target.tokens=8192",
        "search.optimizer.adamw.lr={ low = 1e-3, high = 1e-2, log = true }"))
    out = tmp_path / "run"
    assert main(["search", str(tmp_path / "study.toml"), "--out", str(out)]) == 0
    best = min(RunDir(out).results(), key=lambda r: r.value)
    assert best.threads == 1
    exported = tmp_path / "best.toml"
    assert main(["best", str(out), "--trial", str(best.number), "--export", str(exported)]) == 0
    assert "threads = 1" in exported.read_text()
    # as a user runs it: a fresh process, torch's own thread count, no --threads
    replay = subprocess.run([sys.executable, "-m", "autostage.cli", "trial", str(exported)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    last = replay.stdout.strip().splitlines()[-1]
    assert f"eval.target.loss = {best.value:.6g}," in last, (last, best.value)
