"""The regression objective of the transformers trainer: numeric labels from the datasets, an
MSE head of one output, and mse / mae / R² on the held-out sample."""

import json
import math

import pytest
from support.studies import tiny_classifier_study

from autostage.cli import main
from autostage.records import TrialStatus


def regression_study(*sets, data=("sums",), drop=()) -> str:
    """A one-layer BERT regressing 2-digit sums (arith's regression variant), judged by R²."""
    return tiny_classifier_study(
        "study.name=sums", "study.metric=eval.sums.r2", "model.context=8",
        "data.sums.dataset=arith", "data.sums.variant=regression", "data.sums.digits=2",
        "data.sums.train_size=2000", "stage.fit.data=sums", "stage.fit.objective=regression",
        "stage.fit.tokens=3000", "stage.fit.final=true", *sets,
        data=data, stages=("fit",), drop=drop)


def test_arith_regression_labels_each_problem_with_its_sum_over_the_width():
    from autostage_plugins.datasets import Arith

    examples = Arith(variant="regression", digits=2, train_size=50).examples("train", seed=0)
    for e in examples:
        a, b = (int(x) for x in e.text.split("+"))
        assert len(e.text) == len("07+93") and e.prompt == ""
        assert e.label == (a + b) / 100 and isinstance(e.label, float)
    # the held-out problems are those of the text variant, as text and label
    val = Arith(variant="regression", digits=2).examples("val", seed=3)
    assert [e.text for e in val] == [e.prompt.rstrip("=")
                                     for e in Arith(digits=2).examples("val", seed=0)]


@pytest.mark.parametrize(("label", "number"), [
    (2, 2.0), (0.25, 0.25), ("3.5", 3.5), (" -2e3 ", -2000.0), ("7", 7.0),
    ("abc", None), ("", None), ("nan", None), (math.inf, None), ("1e999", None),
    (True, None), (None, None), ([1], None)])
def test_a_label_reads_as_a_finite_number_or_not_at_all(label, number):
    from autostage_plugins.datasets import label_number

    assert label_number(label) == number


def test_regression_metrics_score_the_mean_predictor_zero_and_exact_answers_one():
    from autostage_plugins.lm_eval import regression_metrics

    actual = [1.0, 2.0, 3.0, 6.0]
    mean = regression_metrics([3.0] * 4, actual)
    assert mean == {"mse": 3.5, "mae": 1.5, "r2": 0.0}  # mse: the targets' variance
    assert regression_metrics(actual, actual) == {"mse": 0.0, "mae": 0.0, "r2": 1.0}
    assert regression_metrics([2.0, 2.0, 3.0, 7.0], actual)["r2"] == pytest.approx(1 - 0.5 / 3.5)
    # all targets equal: no variance to explain, R² 1 if exact else 0 — never a NaN
    assert regression_metrics([5.0, 5.0], [5.0, 5.0])["r2"] == 1.0
    assert regression_metrics([4.0, 5.0], [5.0, 5.0])["r2"] == 0.0


def test_r2_is_maximised_and_reported_only_for_regression(tmp_path, capsys, registry):
    trainer = registry.get("trainer", "transformers")
    assert "r2" in trainer.maximize and {"mse", "mae"}.isdisjoint(trainer.maximize)
    (tmp_path / "study.toml").write_text(regression_study("study.metric=eval.sums.accuracy"))
    assert main(["validate", str(tmp_path / "study.toml")]) == 2
    assert "data source 'sums' is evaluated as regression (by the objective of the stage " \
        "training on it), which reports loss, mse, mae, r2, examples" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_label_that_is_no_number_names_the_file_line_and_field_in_validate(
        tmp_path, capsys, suffix):
    rows = [{"text": f"row {i}", "score": str(i / 10)} for i in range(20)]
    rows[7]["score"] = "high"
    path = tmp_path / f"rows.{suffix}"
    if suffix == "csv":
        path.write_text("text,score\n" + "".join(f"{r['text']},{r['score']}\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "study.toml").write_text(regression_study(
        f"data.rows.dataset={suffix}", f"data.rows.path={path}", "data.rows.label_field=score",
        "study.metric=eval.rows.r2", "stage.fit.data=rows", data=("rows",)))
    assert main(["validate", str(tmp_path / "study.toml")]) == 2
    line = 9 if suffix == "csv" else 8  # csv: the header is line 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{tmp_path / 'study.toml'}: data.rows.label_field: {path} line {line}: 'score' is "
        "'high', not a finite number; a regression stage needs a number in every row "
        "(e.g. 3.5)"]


def test_the_same_labels_classified_pass_validate(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("text,score\n" + "".join(f"row {i},{['high', 'low'][i % 2]}\n"
                                             for i in range(20)))
    (tmp_path / "study.toml").write_text(regression_study(
        "data.rows.dataset=csv", f"data.rows.path={path}", "data.rows.label_field=score",
        "study.metric=eval.rows.accuracy", "stage.fit.data=rows",
        "stage.fit.objective=classify", data=("rows",)))
    assert main(["validate", str(tmp_path / "study.toml")]) == 0


def trial(tmp_path, registry, text, overrides=()):
    from autostage import load_study, prepare_trial, sample_config

    (tmp_path / "study.toml").write_text(text)
    study = load_study(tmp_path / "study.toml", registry, list(overrides))
    prepared = prepare_trial(study, registry, sample_config(study, registry, 0), 0)
    return prepared.run(), prepared.trainer


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_a_regression_stage_trains_an_mse_head_of_one_output(tmp_path, registry, arch):
    result, run = trial(tmp_path, registry, regression_study(
        f"model.arch={arch}", "search.optimizer.adamw.lr=5e-3"))
    assert result.status == TrialStatus.COMPLETED, result.reason
    model = run.models["regression"]
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    first, last = (e.metrics for e in (result.evals[0], result.evals[-1]))
    assert set(last) >= {f"eval.sums.{m}" for m in ("loss", "mse", "mae", "r2", "examples")}
    assert last["eval.sums.loss"] == last["eval.sums.mse"]
    assert last["eval.sums.mse"] < first["eval.sums.mse"]


@pytest.mark.slow
def test_labels_that_are_no_numbers_fail_before_training_naming_the_example(tmp_path, capsys):
    # a dataset of names (pydoc's topics) regressed: preflight cannot check a third-party
    # dataset's labels, so the trainer does, before any step
    (tmp_path / "study.toml").write_text(regression_study(
        "data.sums.dataset=pydoc", "data.sums.variant=classify", "data.sums.passage_chars=200",
        drop=("data.sums.digits", "data.sums.train_size")))
    assert main(["trial", str(tmp_path / "study.toml")]) == 2
    out, err = capsys.readouterr()
    assert "data source 'sums' (train split): example 0 has the label 'compound', not a " \
        "finite number; a regression stage trains on numeric labels" in err
    assert "Traceback" not in err and "tokens" not in out
