"""What an eval of the transformers trainer measures: a fixed seeded sample of the held-out
split (the same for every trial of a study), its size reported, macro-F1 over the label set."""


import pytest
from support.studies import tiny_classifier_study

from autostage.build import build_trial
from autostage.check import load_study
from autostage.space import compile_space, decode, sample
from autostage.trial import run_trial


def plays_study(path, *sets, stages=None) -> str:
    """The plays classifier (a one-layer BERT, evals of 2 batches of 16) on the CSV `path`."""
    return tiny_classifier_study(f"data.plays.path={path}", *sets, stages=stages)


def start(tmp_path, registry, text, overrides=(), seed=0):
    path = tmp_path / "study.toml"
    path.write_text(text)
    study = load_study(path, registry, list(overrides))
    space = compile_space(study, registry)
    trainer, setup, plan = build_trial(study, registry, decode(space, sample(space, seed)), seed)
    return plan, trainer.start(setup)


def classifier(tmp_path, registry, rows, overrides=(), seed=0):
    """A started trial of the plays study, in its classify stage, untrained."""
    text = plays_study(sorted_by_label(tmp_path, rows))
    plan, run = start(tmp_path, registry, text, overrides, seed)
    run.begin_stage(plan.stages["classify"])
    return run


def sorted_by_label(tmp_path, rows):
    """A CSV whose first half is comedies and second half tragedies, as exports often are."""
    path = tmp_path / "plays.csv"
    half = rows // 2
    path.write_text("text,label\n" + "".join(
        f"line {i} of a play,{'comedy' if i < half else 'tragedy'}\n" for i in range(rows)))
    return path


def always_comedy(run):
    """The classifier's head answers class 0 (comedy, the first name) whatever it reads."""
    import torch

    head = run.model("classify").classifier
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([5.0, 0.0]))


@pytest.mark.slow
def test_a_label_sorted_file_is_scored_on_a_seeded_sample_not_on_its_head(tmp_path, registry):
    scores = []
    for seed in (1, 2):
        run = classifier(tmp_path, registry, rows=2000, seed=seed)
        always_comedy(run)
        scores.append(run.evaluate(["plays"])["plays"])
    # the first 32 held-out rows are all comedies: an always-comedy model scored 1.0 there
    assert scores[0]["accuracy"] < 0.8
    assert scores[0] == scores[1]  # the same sample whatever the trial's seed
    from autostage_plugins.lm_data import held_out_sample

    held_out = run.data.examples["plays"]["val"]  # 200 examples, 2 x 16 scored
    comedies = [e.label for e in held_out_sample(held_out, 32)].count(0)
    assert scores[0]["accuracy"] == comedies / 32 and scores[0]["examples"] == 32


@pytest.mark.slow
def test_a_split_no_larger_than_the_eval_is_scored_whole(tmp_path, registry):
    run = classifier(tmp_path, registry, rows=400, overrides=["model.eval_batches=4"])
    always_comedy(run)
    held_out = run.data.examples["plays"]["val"]
    got = run.evaluate(["plays"])["plays"]
    assert len(held_out) == 40 and got["examples"] == 40
    assert got["accuracy"] == [e.label for e in held_out].count(0) / 40


def test_language_model_windows_are_spread_over_the_whole_val_stream():
    from autostage.components import Example
    from autostage_plugins.lm_data import Stream
    from autostage_plugins.tokenize import byte_tokenizer

    stream = Stream.build([Example(f"passage {i}") for i in range(500)], byte_tokenizer())
    starts = stream.eval_starts(32, 16)
    assert len(starts) == 16 and starts == sorted(set(starts))
    assert all(s % 32 == 0 for s in starts)  # non-overlapping windows
    assert starts[-1] > len(stream.ids) / 2  # not the stream's first 16 windows
    assert stream.eval_starts(32, 16) == starts  # the same at every eval
    windows = list(stream.eval_windows(32, 16))
    assert windows[-1][0].tolist() == stream.ids[starts[-1]:starts[-1] + 32].tolist()
    short = Stream.build([Example("x" * 40)], byte_tokenizer())
    assert short.eval_starts(32, 16) == [0]  # all there is


@pytest.mark.slow
def test_every_eval_reports_how_many_examples_or_windows_it_scored(tmp_path, registry):
    text = plays_study(sorted_by_label(tmp_path, rows=2000),
                       "data.docs.dataset=pydoc", "stage.pretrain.data=docs",
                       "stage.pretrain.objective=mlm", "stage.pretrain.tokens=512",
                       stages=("pretrain", "classify"))
    plan, run = start(tmp_path, registry, text)
    result = run_trial(plan, run)
    assert {ev.stage for ev in result.evals} == {"pretrain", "classify"}
    for ev in result.evals:
        assert ev.metrics["eval.plays.examples"] == 32  # 2 batches of 16
        if ev.stage == "pretrain":
            assert ev.metrics["eval.docs.examples"] == 32  # windows of 32 tokens


def test_macro_f1_averages_the_label_set_a_sample_shows_or_a_model_predicts():
    from autostage_plugins.lm_eval import macro_f1

    # class 2 is predicted but absent: its false alarm scores 0 for it, not only for class 1
    assert macro_f1([0, 0, 1, 2], [0, 0, 1, 1]) == pytest.approx((1 + 2 / 3 + 0) / 3)
    # class 3 of the label set is neither in the sample nor predicted: left out, so a perfect
    # classifier scores 1 on a sample without it
    assert macro_f1([0, 1, 2, 2], [0, 1, 2, 2]) == 1.0
    # one class predicted throughout: 0 for every class but that one
    assert macro_f1([1, 1, 1, 1], [0, 1, 1, 2]) == pytest.approx((0 + 2 / 3 + 0) / 3)
