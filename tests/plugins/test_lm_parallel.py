"""The transformers trainer's data parallel (`lm_parallel`) under torch.distributed alone (gloo,
no Ray): two workers train a BERT through an MLM stage and a classify stage, with gradient
accumulation, as one process does — the objectives the search test (causal LM) leaves out."""

import json
import subprocess
import sys
import textwrap

import pytest
from support.studies import tiny_lm_study

pytestmark = pytest.mark.slow

STUDY = tiny_lm_study(
    "model.arch=bert", "model.grad_accum=2", "stage.general.objective=mlm",
    "stage.target.objective=classify", "data.target.dataset=pydoc",
    "data.target.variant=classify", "study.metric=eval.target.accuracy", "study.mode=max",
    "stage.general.tokens=1024", "stage.target.tokens=1024", "stage.general.eval_every=512",
    "stage.target.eval_every=512", drop=["data.target.digits"])

# one trial in this process: worker `rank` of `world` (1: alone); its evals as JSON
TRIAL = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from autostage.build import prepare_trial, sample_config
    from autostage.check import load_study
    from autostage.host import load_registry

    study_path, rank, world, store, out = sys.argv[1:]
    rank, world = int(rank), int(world)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world)
    registry = load_registry()
    study = load_study(study_path, registry, [])
    params = sample_config(study, registry, 0)
    result = prepare_trial(study, registry, params, 0, threads=1, replica=(rank, world)).run()
    with open(out, "w") as f:
        json.dump([[e.stage, e.metrics] for e in result.evals], f)
""")


def test_two_workers_train_mlm_and_classify_as_one_process(tmp_path):
    (tmp_path / "study.toml").write_text(STUDY)
    (tmp_path / "trial.py").write_text(TRIAL)

    def start(rank, world):
        return subprocess.Popen([sys.executable, str(tmp_path / "trial.py"),
                                 str(tmp_path / "study.toml"), str(rank), str(world),
                                 str(tmp_path / "store"), str(tmp_path / f"{world}-{rank}.json")],
                                stderr=subprocess.PIPE, text=True)

    for group in ([start(0, 1)], [start(0, 2), start(1, 2)]):
        for process in group:
            _, err = process.communicate(timeout=600)
            assert process.returncode == 0, err
    alone, first, second = (json.loads((tmp_path / f"{n}.json").read_text())
                            for n in ("1-0", "2-0", "2-1"))
    assert first == second  # every worker saw the same numbers, so decided alike
    assert [stage for stage, _ in alone] == [stage for stage, _ in first] == \
        ["general", "general", "target", "target"]
    for (_, a), (_, b) in zip(alone, first, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4), key
