"""Branching trials in real searches (Ray Tune + Optuna, the toy FAKE trainer): branches start
from checkpoints their parents recorded, inherit what took effect there, are charged only
what they train, and survive crashes, the token budget and a killed driver."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from support import STUDIES

from autostage.cli import main
from autostage.keys import BRANCH_ATTR
from autostage.records import TrialStatus, lineage_evals
from autostage.rundir import RunDir

STUDY = STUDIES / "quickstart-toy.toml"
POPULATION = ["study.trial_scheduler=population",
              "study.trial_scheduler_settings={quantile = 0.25, fresh = 0.2}"]


def search(out, *overrides, resume=False):
    sets = [arg for o in [*POPULATION, *overrides] for arg in ("--set", o)]
    return main(["search", str(STUDY), "--out", str(out), *sets, *(["--resume"] if resume else [])])


def trained(run, number):
    """What the toy trainer really trained for trial `number` (its ledger)."""
    ledger = run.trial_dir(number) / "trained-tokens.log"
    return sum(int(line) for line in ledger.read_text().split()) if ledger.exists() else 0


def check_lineage(run):
    """Every branched trial starts at a checkpoint its parent recorded, after it, with the
    parent's prefix; returns the branched records."""
    trials = run.trials()
    by_number = {r.number: r for r in trials}
    branched = [r for r in trials if r.branch is not None]
    for r in branched:
        parent = by_number[r.branch.parent]
        at = lineage_evals(parent, by_number)[r.branch.evals - 1]
        assert at.checkpoint == r.branch.checkpoint and at.eval.tokens == r.branch.tokens
        assert r.branch.prefix == dict(parent.config) and r.branch.seed == parent.seed
        if r.status == TrialStatus.INTERRUPTED:
            continue  # killed, perhaps while Optuna was sampling it: some parameters only
        assert r.seed == parent.seed  # a branch trains with its lineage root's seed
        plan = r.config["plan.order"].split(">")
        if r.branch.done:  # at a stage boundary: what ran is kept, the rest may be new
            assert tuple(plan[:len(r.branch.done)]) == r.branch.done
            if r.evals:
                assert r.evals[0].eval.stage == plan[len(r.branch.done)]
        else:
            assert r.config["plan.order"] == parent.config["plan.order"]  # inherited
        if r.evals:
            assert r.evals[0].eval.tokens > r.branch.tokens  # its own evals come after
            assert r.tokens == r.evals[-1].eval.tokens - r.branch.tokens  # charged its own
        assert json.loads((run.trial_dir(r.number) / "branch.json").read_text()) == \
            {"format": "autostage.branch/2", **r.branch.to_json()}
    return branched


@pytest.fixture(scope="module")
def population_run(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("population") / "run"
    assert search(out, "study.trials=24", "model.ledger=true") == 0
    return RunDir(out)


@pytest.mark.slow
def test_branches_start_at_parents_checkpoints_and_are_charged_only_what_they_train(
        population_run):
    run = population_run
    branched = check_lineage(run)
    assert len(branched) >= 4, [r.number for r in run.results()]
    records = run.results()
    assert [(r.number, trained(run, r.number)) for r in records] == \
        [(r.number, r.tokens) for r in records]
    # a branch trains less than its lineage: the prefix was not trained again
    assert all(r.tokens < r.lineage_tokens for r in branched)
    # Optuna's record: where it branched, and the parent's values for what it inherited
    stored = {t.number: t for t in optuna.load_study(
        study_name="quickstart-toy", storage=run.storage_url).get_trials()}
    for r in branched:
        trial = stored[r.number]
        assert trial.user_attrs[BRANCH_ATTR] == r.branch.to_json()
        inherited = {k for k in trial.params if k not in r.continuation}
        assert {k: trial.params[k] for k in inherited} == \
            {k: r.branch.prefix[k] for k in inherited}
    assert any(r.continuation for r in branched)  # the sampler proposed something new


@pytest.mark.slow
def test_ended_trials_keep_only_the_checkpoints_a_branch_may_start_from(population_run):
    """keep_checkpoints = "needed" (the default): every branch found its parent's checkpoint
    (pinned while it was queued or running), and the ones no branch may use are gone."""
    run = population_run
    records = run.trials()
    assert not [r.reason for r in records if "cannot branch" in r.reason]
    recorded = {e.checkpoint for r in records for e in r.evals if e.checkpoint}
    on_disk = {str(p.relative_to(run.path))  # named relative to the run, as the records do
               for p in run.path.glob("ray-*/trial-*/checkpoint_*")}
    assert on_disk < recorded  # nothing unrecorded is left, and most are gone
    assert len(on_disk) <= len(recorded) // 2, (len(on_disk), len(recorded))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["random", "qmc", "cmaes", "gp", "nsga2"])
def test_every_sampler_proposes_continuations(ray_session, tmp_path, sampler):
    out = tmp_path / "run"
    assert search(out, f"study.sampler={sampler}", "study.trials=12") == 0
    run = RunDir(out)
    assert sum(r.status.finished for r in run.results()) == 12
    assert check_lineage(run), f"{sampler}: no trial branched"


@pytest.mark.slow
def test_the_token_budget_counts_only_what_branches_train(ray_session, tmp_path):
    out = tmp_path / "run"
    assert search(out, "study.trials=100", "study.token_budget=3_000_000",
                  "model.ledger=true") == 0
    run = RunDir(out)
    records = run.results()
    spent = sum(r.tokens for r in records)
    assert check_lineage(run)
    cut = [r for r in records if "token budget was spent" in r.reason]
    assert [(r.number, trained(run, r.number)) for r in records if r not in cut] == \
        [(r.number, r.tokens) for r in records if r not in cut]
    # the trials running when the budget ran out were stopped where they were: what they
    # trained since their last report (at most a prefix stage's held-back evals and one
    # segment) is the search's overrun, trained and not charged
    assert all(0 <= trained(run, r.number) - r.tokens <= 100_000 + 51_200 for r in cut), \
        [(r.number, trained(run, r.number), r.tokens) for r in cut]
    assert 3_000_000 <= spent < 3_000_000 + 2 * 100_000
    assert sum(r.status.finished for r in records) < 100


@pytest.mark.slow
def test_a_crashed_branch_is_retried_from_its_own_checkpoint_or_its_branch_point(
        ray_session, tmp_path):
    out = tmp_path / "run"
    # every trial crashes once as its lineage passes 150k tokens: a branch from later
    # crashes at its first step (no checkpoint of its own: it restarts at its branch point)
    assert search(out, "study.trials=16", "study.retries=2", "model.crash_at_tokens=150_000",
                  "model.crash_once=true", "study.sampler=random") == 0
    run = RunDir(out)
    branched = check_lineage(run)
    crashed = [r for r in branched if (run.trial_dir(r.number) / "crashed-once").exists()]
    assert crashed, "no branch crashed"
    for r in crashed:
        assert r.status != TrialStatus.FAILED, r.reason
        assert run.events(r.number) == list(r.evals)  # the retry's replays were truncated
    assert not [r for r in run.results() if r.status == TrialStatus.FAILED
                and "injected crash" in r.reason]


@pytest.mark.slow
def test_a_killed_population_search_resumes_with_its_branches_intact(tmp_path):
    out = tmp_path / "run"
    sets = [arg for o in [*POPULATION, "study.trials=14", "model.step_seconds=0.003"]
            for arg in ("--set", o)]
    cmd = [sys.executable, "-m", "autostage.cli", "search", str(STUDY), "--out", str(out), *sets]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    run, deadline = RunDir(out), time.time() + 120
    while (not any(r.branch for r in run.trials()) or len(run.results()) < 6) \
            and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    records = run.results()
    assert sum(r.status.finished for r in records) == 14
    check_lineage(run)
    # a branch the kill interrupted ran again later as the same branch
    for r in records:
        if r.status == TrialStatus.INTERRUPTED and r.branch and r.config:
            assert any(f.branch == r.branch and r.config.items() <= f.config.items()
                       for f in records if f.status.finished), r.number


@pytest.mark.slow
def test_an_exported_branch_replays_its_whole_lineage_as_one_trial(population_run, tmp_path,
                                                                    capsys):
    run = population_run
    trials = run.trials()
    by_number = {r.number: r for r in trials}

    def depth(r):
        return 0 if r.branch is None else 1 + depth(by_number[r.branch.parent])

    ranked = [r for r in trials if r.branch and r.ranked_value is not None]
    chosen = max(ranked, key=lambda r: (depth(r), -r.number))
    exported = tmp_path / "lineage.toml"
    assert main(["best", str(run.path), "--trial", str(chosen.number),
                 "--export", str(exported)]) == 0
    text = exported.read_text()
    assert text.count("\n[[lineage]]\n") == depth(chosen) + 1
    capsys.readouterr()
    assert main(["validate", str(exported)]) == 0
    # no --threads: the export fixed the count the trial ran with, so the replay is exact
    assert f"threads = {chosen.threads}" in text and chosen.threads >= 1
    assert main(["trial", str(exported)]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    value = float(last.split("= ")[1].split()[0].rstrip(","))
    lineage = lineage_evals(chosen, by_number)
    # the replay trains what the lineage trained with the same seed (a branch trains with its
    # root's) and the same RNG, so it ends where the branch ended
    assert f"{lineage[-1].eval.tokens:,} tokens" in last
    assert value == pytest.approx(chosen.value, rel=1e-3)
    # a search over a replay would sample over it: refused in one line
    assert main(["search", str(exported), "--out", str(tmp_path / "s")]) == 2
    assert "replays one trial's lineage" in capsys.readouterr().err


def lineage_study(tmp_path, *steps):
    """quickstart-toy with a [[lineage]] of `steps` ((after_tokens, optimizer) pairs)."""
    text = STUDY.read_text() + "".join(
        f'\n[[lineage]]\nafter_tokens = {after}\n[lineage.params]\noptimizer = "{opt}"\n'
        f'"plan.order" = "target"\n' for after, opt in steps)
    path = tmp_path / "lineage.toml"
    path.write_text(text)
    return path


def test_a_broken_lineage_is_one_line_naming_its_segment(tmp_path, capsys):
    path = lineage_study(tmp_path, (5, "adamw"), (5, "adamw"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lineage[1].after_tokens: the lineage's first segment starts at 0 tokens, not 5" \
        in err
    assert "lineage[2].after_tokens: 5 must be more than the segment before's 5" in err
    assert "Traceback" not in err
    path = lineage_study(tmp_path, (0, "adamw"), (4096, "lion9"))
    assert main(["trial", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lineage[2].params: config chooses optimizer 'lion9'" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_branch_point_that_fails_to_load_is_handed_out_once_and_named_in_one_line(
        ray_session, tmp_path, monkeypatch):
    """Every checkpoint is damaged as the driver hears of it, before any branch can load it:
    each branch from it fails, its record naming the checkpoint in one line, and its point
    is never handed out again (one trial at a time: each failure is known before the next
    hand-out)."""
    from collections import Counter

    from autostage.branching import BranchPoints
    from autostage.checkpoint_seal import LOOP

    noted = BranchPoints.note

    def damaged(self, point):
        (Path(point.path) / LOOP).write_text("{}")  # no longer what its manifest sealed
        noted(self, point)

    monkeypatch.setattr(BranchPoints, "note", damaged)
    out = tmp_path / "run"
    assert search(out, "study.trials=12", "study.parallel=1") == 0
    run = RunDir(out)
    stored = optuna.load_study(study_name="quickstart-toy", storage=run.storage_url).get_trials()
    handed = Counter(t.user_attrs[BRANCH_ATTR]["checkpoint"] for t in stored
                     if BRANCH_ATTR in t.user_attrs)
    assert handed and max(handed.values()) == 1, handed
    branched = [r for r in run.results() if r.branch is not None]
    for r in branched:
        assert r.status == TrialStatus.FAILED
        assert r.reason.startswith(f"cannot branch from trial {r.branch.parent}: checkpoint "
                                   f"{out.resolve() / r.branch.checkpoint}: loop.json does "
                                   "not match its manifest"), r.reason
        assert "\n" not in r.reason and r.reason.count("checkpoint_") == 1
