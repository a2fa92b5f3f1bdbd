"""A kept transformers model works in plain `transformers` pipelines, as trained: each
pipeline with its defaults runs on inputs longer than the model's positions, and a classifier's
and a regressor's reproduce the metric their last eval recorded on the held-out sample."""

import json
import random

import pytest
from support.studies import tiny_lm_study

from autostage.records import TrialStatus

pytestmark = pytest.mark.slow

LONG = "The quick brown fox jumps over the lazy dog; " * 6  # 270 bytes: positions are 32
FILLER = ["apple", "iron", "pear", "zinc", "plum", "lead", "fig", "tin"]


def exported(tmp_path, registry, study_text, overrides=()):
    """A trial of `study_text` run in-process, its model exported to tmp_path/model: the
    trainer's run, the trial's result and the export's directory."""
    from autostage import load_study, prepare_trial, sample_config

    (tmp_path / "study.toml").write_text(study_text)
    study = load_study(tmp_path / "study.toml", registry, list(overrides))
    trial = prepare_trial(study, registry, sample_config(study, registry, 0), 0)
    result = trial.run()
    assert result.status == TrialStatus.COMPLETED, result.reason
    trial.trainer.export(str(tmp_path / "model"))
    return trial.trainer, result, str(tmp_path / "model")


def rows_study(tmp_path, rows, *sets):
    """A one-layer model (32 positions) of the jsonl `rows`, in one stage `fit` on `rows`."""
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tiny_lm_study(
        "model.eval_batches=2", "data.rows.dataset=jsonl", f"data.rows.path={path}",
        "data.rows.label_field=label", "data.rows.val_fraction=0.2",
        "stage.fit.data=rows", "stage.fit.tokens=3000", "stage.fit.final=true",
        "search.optimizer.adamw.lr=3e-3", *sets, data=("rows",), stages=("fit",))


def long_rows(label, count=150, seed=0):
    """Rows of ~100 bytes, longer than the context: what decides the label comes first."""
    rng = random.Random(seed)
    return [{"text": f"{k:02d} " + " ".join(rng.choices(FILLER, k=20)), "label": label(k)}
            for k in (rng.randrange(100) for _ in range(count))]


def eval_sample(run, source):
    from autostage_plugins.lm_data import held_out_sample

    return held_out_sample(run.data.examples[source]["val"],
                           run.cfg.eval_batches * run.cfg.batch_size)


def test_a_causal_lm_generates_with_the_pipelines_defaults_within_its_positions(
        tmp_path, registry):
    from transformers import AutoTokenizer, pipeline

    run, _, model = exported(tmp_path, registry, tiny_lm_study(
        "stage.general.tokens=1024", "stage.target.tokens=512", "model.eval_batches=1"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    assert tokenizer.model_max_length == 32 and tokenizer.truncation_side == "left"
    generate = pipeline("text-generation", model=model)
    assert generate.model.generation_config.max_length == 32
    assert generate.model.generation_config.pad_token_id == run.tok.pad_id
    # a long prompt keeps its last 24 bytes: 8 positions are left to generate in
    assert tokenizer(LONG)["input_ids"] == list(LONG.encode()[-24:])
    for prompt in (LONG, "12+34="):
        assert generate(prompt)[0]["generated_text"].startswith(prompt)
        # 256 new tokens by default, were the model's generation config silent
        ids = generate(prompt, return_tensors=True)[0]["generated_token_ids"]
        kept = tokenizer(prompt)["input_ids"]
        assert ids[:len(kept)] == kept and len(kept) < len(ids) <= 32


def test_a_kept_byte_model_trained_on_again_reads_whole_texts(tmp_path, registry):
    from autostage_plugins.tokenize import pretrained_tokenizer

    _, _, model = exported(tmp_path, registry, tiny_lm_study(
        "stage.general.tokens=256", "stage.target.tokens=256", "model.eval_batches=1"))
    # `pretrained = DIR` tokenizes with DIR's tokenizer: not the export's cut one
    tok = pretrained_tokenizer(model)
    assert tok.kind == "byte" and tok.encode(LONG) == list(LONG.encode())


def test_a_masked_lm_fills_masks_with_the_pipelines_defaults_in_long_texts(tmp_path, registry):
    from transformers import AutoTokenizer, pipeline

    run, _, model = exported(tmp_path, registry, tiny_lm_study(
        "study.metric=eval.general.loss", "model.arch=bert", "model.eval_batches=1",
        "stage.general.objective=mlm", "stage.general.tokens=1024", "stage.general.final=true",
        stages=("general",), data=("general",)))
    tokenizer = AutoTokenizer.from_pretrained(model)
    assert tokenizer.model_max_length == 32 and tokenizer.truncation_side == "right"
    fill = pipeline("fill-mask", model=model)
    answers = fill(f"The {fill.tokenizer.mask_token}uick brown fox. " + LONG)
    assert len(answers) == 5 and all(a["token"] < run.tok.vocab_size for a in answers)


def test_a_classifier_scores_through_the_pipeline_exactly_as_its_last_eval(tmp_path, registry):
    from transformers import AutoTokenizer, pipeline

    from autostage_plugins.lm_data import classify_batch

    rows = long_rows(lambda k: ["low", "high"][k >= 50])
    run, result, model = exported(tmp_path, registry, rows_study(
        tmp_path, rows, "model.arch=bert", "study.metric=eval.rows.accuracy",
        "study.mode=max", "stage.fit.objective=classify"))
    sample = eval_sample(run, "rows")
    tokenizer = AutoTokenizer.from_pretrained(model)
    for e in sample:  # <cls>, then the text's first 31 bytes: as training framed it
        batch = classify_batch([e], run.tok, 32)
        assert tokenizer(e.text)["input_ids"] == batch["input_ids"][0].tolist()
    classify = pipeline("text-classification", model=model)
    answers = classify([e.text for e in sample])
    accuracy = sum(a["label"] == run.labels[e.label]
                   for a, e in zip(answers, sample, strict=True)) / len(sample)
    assert accuracy == result.evals[-1].metrics["eval.rows.accuracy"]
    assert classify(LONG)[0]["label"] in run.labels


def test_a_regressor_scores_through_the_pipeline_with_the_recorded_mse(tmp_path, registry):
    from transformers import pipeline

    rows = long_rows(lambda k: k / 25)
    run, result, model = exported(tmp_path, registry, rows_study(
        tmp_path, rows, "study.metric=eval.rows.mse", "stage.fit.objective=regression"))
    sample = eval_sample(run, "rows")
    regress = pipeline("text-classification", model=model)
    predicted = [a["score"] for a in regress([e.text for e in sample])]
    mse = sum((p - e.label) ** 2 for p, e in zip(predicted, sample, strict=True)) / len(sample)
    assert mse == pytest.approx(result.evals[-1].metrics["eval.rows.mse"], rel=1e-4)
    raw = regress([e.text for e in sample], function_to_apply="none")
    assert [a["score"] for a in raw] == predicted  # the default applies nothing either
    assert isinstance(regress(LONG)[0]["score"], float)
