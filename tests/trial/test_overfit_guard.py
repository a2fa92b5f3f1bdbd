"""The rewind stage policy on a real model that overfits: the trial keeps its best weights."""

import pytest
from support.studies import tiny_lm_study

from autostage.decisions import Rewind
from autostage.records import TrialStatus


@pytest.mark.slow
def test_a_trial_that_overfits_under_rewind_ends_with_its_best_weights(tmp_path, registry):
    from pydoc_data.topics import topics

    from autostage import load_study, prepare_trial, sample_config

    # 480 characters to train on, 120 held out: a 128-wide GPT-2 learns the training text by
    # heart within 40k tokens (train loss 4.1 -> 1.3) while the held-out loss turns up
    (tmp_path / "small.txt").write_text(" ".join(topics["assert"].split())[:600])
    (tmp_path / "study.toml").write_text(tiny_lm_study(
        "study.metric=eval.small.loss", "model.n_embd=128",
        "data.small.dataset=text", "data.small.path=small.txt", "data.small.passage_chars=100",
        "data.small.val_fraction=0.2",
        "stage.fit.data=small", "stage.fit.tokens=40_000", "stage.fit.eval_every=4096",
        "stage.fit.final=true", "search.stage_policy.rewind={ max_rewinds = 1 }",
        data=("small",), stages=("fit",)))
    study = load_study(tmp_path / "study.toml", registry, [])
    trial = prepare_trial(study, registry, sample_config(study, registry, 0), 0, threads=1)
    result = trial.run()
    assert result.status == TrialStatus.COMPLETED
    measured = [e.metrics["eval.small.loss"] for e in result.evals]
    best = min(measured)
    assert measured[-1] > best  # it did overfit: the last eval is not the best one
    # ... and ended on the path: a rewind, then a regression past max_rewinds that
    # advances (a Rewind at the last eval restored the best weights before this fix too)
    assert any(isinstance(e.decision, Rewind) for e in result.evals)
    assert not isinstance(result.evals[-1].decision, Rewind)
    # the trial's value, and the weights it keeps (what a search exports), are the best eval's
    assert result.value == best
    assert trial.trainer.evaluate(["small"])["small"]["loss"] == pytest.approx(best, abs=1e-6)
    kept = result.evals[-1].restored_from
    assert kept == next(e.tokens for e in result.evals if e.metrics["eval.small.loss"] == best)
