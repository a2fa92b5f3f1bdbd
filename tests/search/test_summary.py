"""The line a finished search prints: its trials, counted as the study counts them (a resumed
search's interrupted records are not trials of their own: their parameters ran again)."""

import io
from types import SimpleNamespace

from rich.console import Console

from autostage.live import print_summary
from autostage.records import TrialRecord, TrialStatus

COMPLETED, PRUNED, FAILED, INTERRUPTED = (
    TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.FAILED, TrialStatus.INTERRUPTED)


def summary(tmp_path, statuses, interrupted=False):
    """The summary's first line for records of these statuses, 100 tokens each."""
    records = [TrialRecord(n, s, values=(1.0 + n,) if s is COMPLETED else None, tokens=100)
               for n, s in enumerate(statuses)]
    buffer = io.StringIO()
    study = SimpleNamespace(trials=8, modes=["min"], metrics=["eval.target.loss"],
                            keep_models=0)
    outcome = SimpleNamespace(run_dir=tmp_path / "run", records=records,
                              interrupted=interrupted)
    print_summary(Console(file=buffer, width=400), outcome, study)
    return buffer.getvalue().strip().splitlines()[0]


def test_a_resumed_search_counts_its_finished_trials_and_says_what_was_re_queued(tmp_path):
    # what a search killed after two results and resumed left (issue 25: "10 trials")
    statuses = [COMPLETED, COMPLETED, INTERRUPTED, INTERRUPTED, COMPLETED, COMPLETED, FAILED,
                PRUNED, PRUNED, PRUNED]
    assert summary(tmp_path, statuses) == (
        "study finished: 8 trials (4 completed, 3 pruned, 1 failed; 2 more were interrupted "
        "and re-queued), 1,000 training tokens")


def test_a_search_that_was_never_interrupted_counts_as_before(tmp_path):
    assert summary(tmp_path, [COMPLETED, PRUNED]) == (
        "study finished: 2 trials (1 completed, 1 pruned), 200 training tokens")
    assert summary(tmp_path, [COMPLETED, INTERRUPTED], interrupted=True) == (
        "study interrupted: 1 trial (1 completed; 1 more was interrupted and re-queued), "
        "200 training tokens")
