"""Sealed stage-boundary checkpoints (no Ray): a torn or edited one is refused, and a retry
resumes from the newest intact one — with the toy FAKE trainer, the same evals as a trial
that never stopped."""

import json

import pytest

from autostage.checkpoint_seal import (
    LOOP,
    TornCheckpoint,
    on_disk,
    restore,
    seal,
    verify,
)
from autostage.testing.fakes import TOY_STAGES, toy_setup, trial_plan
from autostage.toy import Toy
from autostage.trial import run_trial


def checkpointed_trial(tmp_path):
    """A toy trial that saves every stage boundary as Ray lays checkpoints out:
    checkpoint_000000, checkpoint_000001, ... (trainer files + loop.json, sealed)."""
    plan = trial_plan(None, TOY_STAGES)
    run = Toy().start(toy_setup())
    saved = []

    def checkpoint(state):
        directory = tmp_path / f"checkpoint_{len(saved):06d}"
        directory.mkdir()
        run.save(str(directory))
        (directory / LOOP).write_text(json.dumps(state.to_json()))
        seal(directory)
        saved.append(directory)

    return plan, run_trial(plan, run, checkpoint=checkpoint), saved


def test_a_sealed_checkpoint_verifies(tmp_path):
    _, _, saved = checkpointed_trial(tmp_path)
    assert len(saved) == 2  # after general and after prereq
    for directory in saved:
        verify(directory)


@pytest.mark.parametrize("damage", ["truncate loop.json", "edit loop.json", "delete toy.json",
                                    "no manifest"])
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    _, _, saved = checkpointed_trial(tmp_path)
    latest = saved[-1]
    if damage == "truncate loop.json":
        text = (latest / LOOP).read_text()
        (latest / LOOP).write_text(text[: len(text) // 2])
    elif damage == "edit loop.json":  # valid JSON, other numbers: trained from, it would lie
        state = json.loads((latest / LOOP).read_text())
        state["tokens"] += 1
        (latest / LOOP).write_text(json.dumps(state))
    elif damage == "delete toy.json":
        (latest / "toy.json").unlink()
    else:
        next(latest.glob("manifest*")).unlink()
    with pytest.raises(TornCheckpoint, match="manifest|does not match"):
        verify(latest)
    # the newest intact one is the one before
    assert [n for n, _ in on_disk(latest)][1] == str(saved[0])
    verify(saved[0])


def test_a_retry_resumes_from_the_checkpoint_before_a_torn_latest_one(tmp_path):
    plan, whole, saved = checkpointed_trial(tmp_path)
    weights = saved[-1] / "toy.json"
    weights.write_text(weights.read_text()[:-10])  # a write cut short
    fresh = Toy().start(toy_setup())
    state, refused = restore(fresh, on_disk(saved[-1]))
    assert len(refused) == 1 and "toy.json does not match its manifest" in refused[0]
    assert len(state.evals) < len(whole.evals)
    resumed = run_trial(plan, fresh, resume=state)
    assert resumed.evals == whole.evals  # nothing lost, nothing trained twice
    assert resumed.tokens == whole.tokens


def test_with_no_intact_checkpoint_a_retry_starts_over(tmp_path):
    _, _, saved = checkpointed_trial(tmp_path)
    for directory in saved:
        (directory / LOOP).write_text("{")
    state, refused = restore(Toy().start(toy_setup()), on_disk(saved[-1]))
    assert state is None and len(refused) == 2
