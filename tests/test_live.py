"""The live view of `autostage search` (autostage/live.py `SearchView`), driven as the search
driver drives it — trial_started(who), trial_result(number, tokens, eval, who),
trial_ended(record) — with made-up trials and a scripted clock: no Ray."""

import io
import math
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from autostage.decisions import Advance, Continue, Eval, ScaleLR, Stop
from autostage.keys import PLAN_KEY
from autostage.live import SearchView
from autostage.records import TrialRecord, TrialStatus
from autostage.trial_identity import TrialIdentity

METRIC = "eval.target.loss"
STAGES = {"prereq": 100_000, "target": 200_000}
PLAN = "prereq>target"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def study(trials: int, metric: str = METRIC, stages: dict[str, int] = STAGES,
          budget: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        study=SimpleNamespace(trials=trials, modes=["min"], metrics=[metric],
                              token_budget=budget),
        stage=[SimpleNamespace(name=n, tokens=t) for n, t in stages.items()])


def who(number: int, plan: str = PLAN) -> TrialIdentity:
    return TrialIdentity.of(number, {PLAN_KEY: plan}, 0)


def an_eval(tokens: int, value: float = 2.0, decision=None, metric: str = METRIC,
            stages: dict[str, int] = STAGES) -> Eval:
    """The eval of a `prereq>target` trial at `tokens`."""
    first, budget = next(iter(stages.items()))
    stage, stage_tokens = (first, tokens) if tokens <= budget else \
        (list(stages)[1], tokens - budget)
    return Eval(stage=stage, visit=0, tokens=tokens, stage_tokens=stage_tokens,
                stage_budget=stages[stage], lr=1e-3, metrics={metric: value}, watch=metric,
                decision=decision or Continue())


def render(view: SearchView) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, highlight=False).print(view._panel())
    return buffer.getvalue()


def view_of(trials: int, clock: Clock | None = None, **kw) -> SearchView:
    view = SearchView(Console(file=io.StringIO(), width=200), clock=clock or Clock())
    view.start(study(trials, **kw), done=0, tokens=0)
    return view


def test_a_line_per_running_trial_with_stage_tokens_value_and_decision():
    view = view_of(4)
    for n in range(3):
        view.trial_started(who(n))
    view.trial_result(0, 150_000, an_eval(150_000, 2.314, ScaleLR(0.5)), who(0))
    view.trial_result(1, 50_000, an_eval(50_000, 3.1), who(1))
    text = render(view)
    lines = {int(m.group(1)): line for line in text.splitlines()
             if (m := re.search(r"trial (\d+)  ", line))}
    assert re.search(r"trial 0\s+target\s+150,000/300,000 tokens\s+eval.target.loss 2.314\s+"
                     r"scale_lr x0.5", lines[0]), text
    assert re.search(r"trial 1\s+prereq\s+50,000/300,000 tokens\s+eval.target.loss 3.1\s+"
                     r"continue", lines[1]), text
    assert re.search(r"trial 2\s+starting\s+0/300,000 tokens", lines[2]), text
    # furthest along first
    assert text.index("trial 0  ") < text.index("trial 1  ") < text.index("trial 2  ")
    assert "3 running" in text


def test_an_early_advance_shrinks_what_is_planned():
    view = view_of(1)
    view.trial_started(who(0))
    view.trial_result(0, 40_000, an_eval(40_000, decision=Advance()), who(0))
    # the policy advanced out of prereq at 40,000: target's first eval
    ev = Eval(stage="target", visit=0, tokens=90_000, stage_tokens=50_000, stage_budget=200_000,
              lr=1e-3, metrics={METRIC: 2.0}, watch=METRIC)
    view.trial_result(0, 90_000, ev, who(0))
    assert "90,000/240,000 tokens" in render(view)


def test_a_hundred_running_trials_fold_to_the_furthest_along():
    view = view_of(200)
    for n in range(100):
        view.trial_started(who(n))
        tokens = 3_000 * (n + 1)  # trial 99 is furthest along
        view.trial_result(n, tokens, an_eval(tokens, 2.0 + n / 100), who(n))
    text = render(view)
    shown = [int(m) for m in re.findall(r"trial (\d+)  ", text)]
    assert shown == list(range(99, 89, -1)), text
    assert "+ 90 more running" in text
    assert "100 running" in text
    assert len(text.splitlines()) < 20, text
    # the fold is a setting; the lines stay one per trial at any terminal width
    wide = SearchView(Console(file=io.StringIO()), rows=3, clock=Clock())
    wide.start(study(200), done=0, tokens=0)
    for n in range(100):
        wide.trial_started(who(n))
    assert "+ 97 more running" in render(wide)


def test_the_fold_counts_trials_that_have_not_reported():
    view = view_of(20)
    view.trial_started()  # a caller that does not say which trial (counted, not shown)
    for n in range(12):
        view.trial_started(who(n))
    text = render(view)
    assert "13 running" in text and "+ 3 more running" in text, text


HOSTILE = "[/x] [bold]st[/bold]age"


def test_hostile_stage_metric_and_reason_print_verbatim():
    stages = {HOSTILE: 100_000, "target": 200_000}
    metric = "eval.[/x].loss"
    view = view_of(3, metric=metric, stages=stages)
    plan = f"{HOSTILE}>target"
    view.trial_started(who(0, plan))
    view.trial_result(0, 50_000, an_eval(50_000, 1.5, Stop(f"ValueError: {HOSTILE}"), metric,
                                         stages), who(0, plan))
    view.trial_started(who(1, plan))
    view.trial_result(1, 20_000, an_eval(20_000, 1.7, Advance(to=HOSTILE), metric, stages),
                      who(1, plan))
    text = render(view)
    assert f"{HOSTILE}  " in text, text
    assert f"stop: ValueError: {HOSTILE}" in text, text
    assert f"advance to {HOSTILE}" in text, text
    assert f"{metric} 1.5" in text, text


def search(clock: Clock, view: SearchView, trials: int, parallel: int, setup: float,
           rate: float, prune: set[int] = frozenset()):
    """Runs `trials` trials `parallel` at a time, each trained at `rate` tokens/s per trial
    after `setup` seconds, evaluated every 25,000 tokens (a pruned one stops after 100,000);
    yields the view's estimate and the true time left at every eval."""
    every = 25_000
    events = []  # (time, order, kind, number, tokens): at one time, an eval, an end, a start
    free = [clock.now] * parallel
    for n in range(trials):
        lane = min(range(parallel), key=free.__getitem__)
        start = free[lane]
        total = 100_000 if n in prune else sum(STAGES.values())
        events.append((start, 2, "start", n, 0))
        for tokens in range(every, total + 1, every):
            events.append((start + setup + tokens / rate, 0, "eval", n, tokens))
        free[lane] = start + setup + total / rate
        events.append((free[lane], 1, "end", n, total))
    end = max(free)
    for at, _, kind, n, tokens in sorted(events):
        clock.now = at
        if kind == "start":
            view.trial_started(who(n))
        elif kind == "eval":
            view.trial_result(n, tokens, an_eval(tokens), who(n))
            yield view.seconds_left(), end - at
        else:
            status = TrialStatus.PRUNED if n in prune else TrialStatus.COMPLETED
            view.trial_ended(TrialRecord(n, status, values=(2.0,), tokens=tokens,
                                         config={PLAN_KEY: PLAN}))


@pytest.mark.parametrize("setup", [5.0, 600.0])
def test_the_estimate_follows_measured_token_rates_not_a_per_trial_average(setup):
    """The quickstart's shape (12 trials, 2 at a time): the old estimate, the time per
    finished trial times the trials left, said ~2961 s when ~620 s remained. Measured from
    the trials' pace between evals and their setup, and the tokens still planned, it stays
    near the truth from the second eval on, whatever Ray's own start and each trial's setup
    cost (600 s: as long as its training; a pace measured from the trial's start would be
    half the real one)."""
    clock = Clock()
    view = view_of(12, clock)
    clock.now = 40.0  # Ray starting: not the trials' pace
    estimates = list(search(clock, view, trials=12, parallel=2, setup=setup, rate=500.0))
    first = [guess for guess, _ in estimates[:2]]
    assert all(math.isnan(g) for g in first), first  # one eval each: no pace yet
    for guess, truth in estimates[2:]:
        if truth > 60:
            assert 0.8 * truth <= guess <= 1.25 * truth, (guess, truth)
    ratios = [guess / truth for guess, truth in estimates[2:] if truth > 60]
    assert max(ratios) / min(ratios) < 1.3, ratios
    assert "s left" in render(view)


def test_the_estimate_learns_how_much_of_a_plan_trials_train():
    """ASHA stops many trials early: once trials have ended, a trial still to start is
    expected to train the share of its plan the ended ones trained."""
    clock = Clock()
    view = view_of(12, clock)
    pruned = {0, 1, 2, 3, 5, 6, 8, 9}
    estimates = list(search(clock, view, trials=12, parallel=2, setup=0.0, rate=500.0,
                            prune=pruned))
    late = [(guess, truth) for guess, truth in estimates[len(estimates) // 3:] if truth > 60]
    for guess, truth in late:
        assert 0.5 * truth <= guess <= 2.0 * truth, (guess, truth)


def test_no_estimate_before_a_trial_reports_twice_and_the_budget_caps_it():
    clock = Clock()
    view = view_of(10, clock, budget=500_000)
    view.trial_started(who(0))
    clock.now = 10.0
    view.trial_result(0, 50_000, an_eval(50_000), who(0))
    assert "left" not in render(view)  # its first eval: setup and training are one
    clock.now = 20.0
    view.trial_result(0, 100_000, an_eval(100_000), who(0))
    # 5,000 tokens/s; 9 trials of 300,000 still planned, but the budget leaves 400,000
    assert view.seconds_left() == pytest.approx(80.0)


def test_the_estimate_counts_down_between_evals():
    clock = Clock()
    view = view_of(1, clock)
    view.trial_started(who(0))
    clock.now = 50.0
    view.trial_result(0, 50_000, an_eval(50_000), who(0))
    clock.now = 100.0
    view.trial_result(0, 100_000, an_eval(100_000), who(0))
    assert view.seconds_left() == pytest.approx(200.0)  # 200,000 left at 1,000 tokens/s
    clock.now = 130.0
    assert view.seconds_left() == pytest.approx(170.0)


def test_the_setup_of_a_trial_not_started_yet_is_counted():
    clock = Clock()
    view = view_of(2, clock)
    view.trial_started(who(0))
    clock.now = 60.0  # 10 s of setup, then 50,000 tokens at 1,000 tokens/s
    view.trial_result(0, 50_000, an_eval(50_000), who(0))
    clock.now = 110.0
    view.trial_result(0, 100_000, an_eval(100_000), who(0))
    # trial 0: 200 s; trial 1: 10 s of setup and 300 s of training, one at a time
    assert view.seconds_left() == pytest.approx(510.0)
