"""Each shipped study that trains real models learns something: one trial of a good
configuration, within the study's own token budget, beats the trivial baseline on the very
examples its eval scores — the majority class for a classifier, a unigram model for a
language model, the mean of the labels for a regression."""

import tomllib
from collections import Counter
from pathlib import Path

import pytest

from autostage import load_study, prepare_trial, sample_config
from autostage.records import TrialStatus
from autostage.space import compile_space

STUDIES = Path(__file__).parent.parent / "studies"
# a good configuration of each study (`autostage trial STUDY --set ...` runs the same trial)
GOOD = {
    "quickstart.toml": [
        "search.plan={order='target'}", "search.optimizer={adamw={lr=3e-3}}",
        "search.lr_schedule={cosine={warmup=0.05, min_ratio=0.1}}",
        "stage.target.tokens=200000"],
    "bert-mlm-classify.toml": [
        "search.plan={order='pretrain>classify'}", "search.optimizer={adamw={lr=2e-3}}",
        "search.lr_schedule={constant={}}", "search.stage_policy={budget_split={first=0.2}}"],
    "regression.toml": ["search.optimizer={adamw={lr=8e-3}}", "search.lr_schedule={constant={}}"],
    "branching.toml": [
        "search.plan={order='target'}", "stage.target.data={target=1.0, prereq=1.0}",
        "search.optimizer={adamw={lr=3e-3}}", "search.stage_policy={fixed={}}"],
    "norms.toml": [
        "search.trainer.transformers={norm='pre-rmsnorm'}", "search.optimizer={adamw={lr=3e-3}}"],
}


def one_trial(registry, name, seed=0):
    """Run the study's good configuration as `autostage trial` would, within the study's own
    token budget: no stage longer than the study has it."""
    study = load_study(STUDIES / name, registry, GOOD[name])
    shipped = {s.name: s.tokens for s in load_study(STUDIES / name, registry).stage}
    assert all(s.tokens <= shipped[s.name] for s in study.stage)
    trial = prepare_trial(study, registry, sample_config(study, registry, seed), seed)
    result = trial.run()
    assert result.status == TrialStatus.COMPLETED, result.reason
    return result, trial.trainer


def unigram_loss(run, source: str) -> float:
    """Nats per scored token of the source's eval windows, each token predicted by its
    frequency among the scored tokens of the source's training stream (add-one smoothed) —
    scored as the trainer scores a causal LM: position t predicts token t+1."""
    import torch

    train = run.data.streams[source]["train"]
    counts = torch.bincount(train.ids[train.scored], minlength=run.tok.vocab_size) + 1.0
    log_p = (counts / counts.sum()).log()
    total, tokens = 0.0, 0
    val = run.data.streams[source]["val"]
    for ids, scored in val.eval_windows(run.cfg.context, run.cfg.eval_batches * run.cfg.batch_size):
        target = ids[1:][scored[1:]]
        total -= float(log_p[target].sum())
        tokens += len(target)
    return total / tokens


def majority_share(run, source: str) -> float:
    """The accuracy of always answering the commonest class of the eval sample."""
    from autostage_plugins.lm_data import held_out_sample

    sample = held_out_sample(run.data.examples[source]["val"],
                             run.cfg.eval_batches * run.cfg.batch_size)
    return max(Counter(e.label for e in sample).values()) / len(sample)


def test_every_shipped_transformers_study_is_tested_here():
    shipped = [p.name for p in sorted(STUDIES.glob("*.toml"))
               if tomllib.loads(p.read_text())["model"]["trainer"] == "transformers"]
    assert sorted(shipped) == sorted(GOOD)


@pytest.mark.slow
def test_quickstart_beats_a_unigram_model_of_its_target(registry):
    result, run = one_trial(registry, "quickstart.toml")
    # unigram: about 2.28 nats per answer token; the trial reaches about 1.44
    assert result.value < unigram_loss(run, "target") - 0.3


@pytest.mark.slow
def test_the_branching_study_learns_four_digit_addition(registry):
    result, run = one_trial(registry, "branching.toml")
    # one whole trial (600k target tokens, easy problems mixed in 1:1): far below unigram
    assert result.value < unigram_loss(run, "target") - 0.5


@pytest.mark.slow
def test_the_norms_study_beats_a_unigram_model_of_the_docs(registry):
    result, run = one_trial(registry, "norms.toml")
    # unigram: 3.26 nats per byte; pre-RMSNorm (a Llama) at LR 3e-3 reaches about 2.71
    assert run.models["causal_lm"].config.model_type == "llama"
    assert result.value < unigram_loss(run, "docs") - 0.4


def test_the_norms_study_searches_every_norm(registry):
    space = compile_space(load_study(STUDIES / "norms.toml", registry), registry)
    norm, = space.kind("trainer").params_of("transformers")
    assert norm.type == "categorical"
    assert norm.choices == ("pre-layernorm", "post-layernorm", "pre-rmsnorm")


@pytest.mark.slow
def test_bert_mlm_classify_beats_the_majority_class(registry):
    result, run = one_trial(registry, "bert-mlm-classify.toml")
    # 100k MLM tokens, then 150k classifying: the majority class is 0.451 of the 82
    # held-out passages; the trial reaches about 0.72
    assert result.value > majority_share(run, "topics") + 0.1


def label_variance(run, source: str) -> float:
    """The MSE of the mean predictor on the eval sample — its labels' variance (R² 0)."""
    from autostage_plugins.lm_data import held_out_sample

    sample = held_out_sample(run.data.examples[source]["val"],
                             run.cfg.eval_batches * run.cfg.batch_size)
    mean = sum(e.label for e in sample) / len(sample)
    return sum((e.label - mean) ** 2 for e in sample) / len(sample)


@pytest.mark.slow
def test_the_regression_study_beats_the_mean_of_its_labels(registry):
    result, run = one_trial(registry, "regression.toml")
    metrics = result.evals[-1].metrics
    # the 256 held-out sums over 1000 vary by 0.157 (the mean's MSE, R² 0); 16k tokens at
    # 8e-3 reach about R² 0.95, MSE 0.008
    assert result.value == metrics["eval.sums.r2"] > 0.7
    assert metrics["eval.sums.mse"] < 0.3 * label_variance(run, "sums")
