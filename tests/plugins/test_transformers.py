"""The transformers trainer: real tiny GPT-2 / BERT models trained on CPU in seconds."""

import json
import random
from dataclasses import replace

import pytest
from pydantic import PrivateAttr
from support import STUDIES
from support.studies import tiny_classifier_study, tiny_lm_study

from autostage.build import build_trial
from autostage.check import load_study
from autostage.cli import main
from autostage.components import StagePolicy
from autostage.decisions import Continue, ScaleLR
from autostage.records import TrialStatus
from autostage.space import compile_space, decode, sample
from autostage.trial import LoopState, run_trial

BERT_STUDY = STUDIES / "bert-mlm-classify.toml"
GPT2 = tiny_lm_study()


def prepare(tmp_path, registry, text=GPT2, overrides=(), seed=0):
    path = tmp_path / "study.toml"
    path.write_text(text)
    study = load_study(path, registry, list(overrides))
    space = compile_space(study, registry)
    return study, decode(space, sample(space, seed))


def start(registry, study, config, seed=0, cache_dir=None, policy=None):
    trainer, setup, plan = build_trial(study, registry, config, seed=seed, cache_dir=cache_dir)
    if policy is not None:
        plan = replace(plan, policy=policy)
    return plan, trainer.start(setup)


def run(tmp_path, registry, text=GPT2, overrides=(), seed=0, **kw):
    study, config = prepare(tmp_path, registry, text, overrides, seed)
    plan, trainer = start(registry, study, config, seed=seed, **kw)
    return run_trial(plan, trainer), trainer


@pytest.mark.slow
def test_a_tiny_gpt2_learns_pydoc_text(tmp_path, registry):
    result, _ = run(tmp_path, registry, overrides=[
        "stage.general.tokens=80000", "stage.general.eval_every=16000",
        "stage.target.tokens=256", "search.plan={order='general>target'}"])
    losses = [e.metrics["eval.general.loss"] for e in result.evals if e.stage == "general"]
    assert result.status == TrialStatus.COMPLETED
    # untrained: ln(260) = 5.6 nats per byte; byte frequencies alone give ~3.0; 300 steps beat it
    assert losses[-1] < 2.9 and losses[0] > losses[-1]


@pytest.mark.slow
def test_a_tiny_bert_learns_a_classification_task(tmp_path, registry):
    rng = random.Random(0)
    words = {0: ["apple", "pear", "plum", "fig", "grape", "lime"],
             1: ["iron", "zinc", "tin", "lead", "gold", "neon"]}
    rows = [{"text": " ".join(rng.choices(words[k], k=8)), "label": ["fruit", "metal"][k]}
            for k in (rng.randint(0, 1) for _ in range(600))]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    study = tiny_classifier_study(
        "study.name=clf", "study.metric=eval.rows.accuracy", "model.context=48",
        "data.rows.dataset=jsonl", f"data.rows.path={tmp_path / 'rows.jsonl'}",
        "data.rows.label_field=label",
        "stage.classify.data=rows", "stage.classify.tokens=40000",
        "search.optimizer.adamw.lr=2e-3",
        data=("rows",), drop=("model.eval_batches",))
    result, _ = run(tmp_path, registry, study)
    assert result.status == TrialStatus.COMPLETED
    assert result.evals[-1].metrics["eval.rows.accuracy"] > 0.8  # chance: ~0.5
    assert 0 <= result.evals[-1].metrics["eval.rows.f1"] <= 1


@pytest.mark.slow
def test_same_seed_same_losses_other_seed_other_losses(tmp_path, registry):
    def losses(seed):
        result, _ = run(tmp_path, registry, seed=seed,
                        overrides=["search.plan={order='general>target'}"])
        return [e.metrics["eval.target.loss"] for e in result.evals]

    assert losses(1) == losses(1)
    assert losses(1) != losses(2)


class ScaleOnce(StagePolicy):
    """Scales the LR by 0.1 at the first eval, then continues."""

    _calls: list = PrivateAttr(default_factory=list)

    def decide(self, history):
        return ScaleLR(0.1) if len(history.evals) == 1 else Continue()


@pytest.mark.slow
def test_bf16_autocast_is_for_cuda_only_on_the_cpu_it_changes_no_loss(tmp_path, registry,
                                                                     monkeypatch):
    def losses(bf16):
        result, _ = run(tmp_path, registry, seed=1, overrides=[
            "search.plan={order='general>target'}", f"model.bf16={str(bf16).lower()}"])
        return [e.metrics["eval.target.loss"] for e in result.evals]

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert losses(True) == losses(False)  # bf16 on the CPU would round every activation


@pytest.mark.slow
def test_a_trial_given_a_gpu_torch_cannot_see_fails_at_its_start_naming_both(tmp_path, registry,
                                                                          monkeypatch):
    from autostage.errors import AutostageError

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # as Ray sets it for a trial with a GPU
    with pytest.raises(AutostageError, match=r"^model.device: this trial was given GPU 3 "
                       r"\(CUDA_VISIBLE_DEVICES.*torch sees no CUDA device.*study.resources.gpus "
                       r"= 0"):
        run(tmp_path, registry, seed=1)


@pytest.mark.slow
def test_resume_from_a_checkpoint_gives_the_same_next_losses_and_keeps_scale_lr(
        tmp_path, registry):
    study, config = prepare(tmp_path, registry, overrides=[
        "search.plan={order='general>target'}", "stage.general.eval_every=1024"])
    plan, trainer = start(registry, study, config, policy=ScaleOnce())
    whole = run_trial(plan, trainer)

    saved = {}

    def checkpoint(state):
        trainer.save(str(tmp_path / "ckpt"))
        saved["state"] = state.to_json()

    plan, trainer = start(registry, study, config, policy=ScaleOnce())
    run_trial(plan, trainer, checkpoint=checkpoint)
    plan, trainer = start(registry, study, config, policy=ScaleOnce())
    trainer.load(str(tmp_path / "ckpt"))
    resumed = run_trial(plan, trainer, resume=LoopState.from_json(saved["state"]))

    after = [e for e in whole.evals if e.stage == "target"]
    assert [e.metrics for e in resumed.evals if e.stage == "target"] == \
        [e.metrics for e in after]
    assert [e.lr for e in resumed.evals if e.stage == "target"] == [e.lr for e in after]
    assert after[0].lr == pytest.approx(3e-4)  # the ScaleLR of stage one is still in force


@pytest.mark.slow
def test_resume_inside_the_final_stage_continues_data_and_adamw_moments_exactly(
        tmp_path, registry):
    """A branch point at an eval inside the final stage: `continue_stage` keeps the data
    position and AdamW's moments, so the losses after it are the uninterrupted run's."""
    study, config = prepare(tmp_path, registry, overrides=[
        "search.plan={order='target'}", "stage.target.eval_every=1024"])
    plan, trainer = start(registry, study, config)
    whole = run_trial(plan, trainer)
    saved = {}

    def checkpoint(state):
        if state.stage_done == 2048:
            trainer.save(str(tmp_path / "ckpt"))
            saved["state"] = state.to_json()

    plan, trainer = start(registry, study, config)
    run_trial(plan, trainer, checkpoint=checkpoint, within_final=True)
    plan, trainer = start(registry, study, config)
    trainer.load(str(tmp_path / "ckpt"))
    resumed = run_trial(plan, trainer, resume=LoopState.from_json(saved["state"]))
    assert [e.metrics for e in resumed.evals] == [e.metrics for e in whole.evals]
    assert len(whole.evals) == 4 and resumed.tokens == whole.tokens


@pytest.mark.slow
def test_a_nan_loss_fails_the_trial_with_stage_and_step(tmp_path, registry):
    study, config = prepare(tmp_path, registry, GPT2, ["search.plan={order='general>target'}"])
    plan, trainer = start(registry, study, config)
    losses = 0
    real_loss = trainer._loss

    def loss_turning_nan(model, batch):  # the fault is the test's, not a trainer setting
        nonlocal losses
        losses += 1
        loss = real_loss(model, batch)
        return loss * float("nan") if losses == 3 else loss

    trainer._loss = loss_turning_nan
    result = run_trial(plan, trainer)
    assert result.status == TrialStatus.FAILED
    assert result.reason == "non-finite loss at stage general, step 2"


@pytest.mark.slow
def test_a_local_pretrained_model_loads_and_finetunes(tmp_path, registry):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=260, n_positions=32, n_embd=32, n_layer=1,
                               n_head=2)).save_pretrained(tmp_path / "tiny")
    result, trainer = run(tmp_path, registry, overrides=[
        f"model.pretrained='{tmp_path / 'tiny'}'", "search.plan={order='target'}",
        "stage.target.tokens=16000"])
    losses = [e.metrics["eval.target.loss"] for e in result.evals]
    assert result.status == TrialStatus.COMPLETED and losses[-1] < losses[0]
    assert trainer.models["causal_lm"].config.n_embd == 32


@pytest.mark.slow
def test_a_missing_pretrained_directory_is_one_clear_error(tmp_path, registry, capsys):
    (tmp_path / "study.toml").write_text(GPT2)
    code = main(["trial", str(tmp_path / "study.toml"), "--set",
                 f"model.pretrained='{tmp_path / 'nope'}'"])
    err = capsys.readouterr().err
    assert code == 2 and "model.pretrained: cannot load" in err and "Traceback" not in err


@pytest.mark.slow
def test_mlm_pretraining_hands_its_encoder_to_the_classifier(tmp_path, registry):
    study, config = prepare(tmp_path, registry, text=BERT_STUDY.read_text(), overrides=[
        "search.plan={order='pretrain>classify'}", "stage.pretrain.tokens=1024",
        "stage.pretrain.eval_every=512", "stage.classify.tokens=1024", "model.n_layer=1",
        "model.n_embd=32"])
    plan, trainer = start(registry, study, config)
    run_trial(plan, trainer)
    mlm, clf = trainer.models["mlm"], trainer.models["classify"]
    assert clf.bert.encoder is mlm.bert.encoder
    assert clf.bert.embeddings is mlm.bert.embeddings


@pytest.mark.slow
def test_a_torn_checkpoint_is_detected_and_the_previous_one_used(tmp_path, registry):
    from autostage.checkpoint_seal import (
        TornCheckpoint,
        on_disk,
        restore,
        seal,
        verify,
    )

    study, config = prepare(tmp_path, registry)
    plan, trainer = start(registry, study, config)
    run_trial(plan, trainer)
    first, second = tmp_path / "checkpoint_000000", tmp_path / "checkpoint_000001"
    for directory in (first, second):  # as the search writes them: saved, then sealed
        trainer.save(str(directory))
        (directory / "loop.json").write_text(json.dumps(LoopState((), 0, 1.0, (), {}).to_json()))
        seal(directory)
    weights = second / "causal_lm.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a cut write
    with pytest.raises(TornCheckpoint, match="causal_lm.safetensors does not match"):
        verify(second)
    _, fresh = start(registry, study, config)
    state, refused = restore(fresh, on_disk(second))
    assert state is not None and len(refused) == 1  # the second refused, the first loaded
    assert refused[0].startswith(f"checkpoint {second}: causal_lm.safetensors")


def test_masked_lm_on_gpt2_is_refused_by_validate(tmp_path, capsys):
    (tmp_path / "study.toml").write_text(GPT2.replace('data = "general"',
                                                      'data = "general"\nobjective = "mlm"'))
    assert main(["validate", str(tmp_path / "study.toml")]) == 2
    assert "arch 'gpt2' cannot train mlm" in capsys.readouterr().err


@pytest.mark.slow
def test_a_bpe_tokenizer_is_trained_once_and_cached(tmp_path, registry):
    cache = tmp_path / "cache"
    _, trainer = run(tmp_path, registry, overrides=[
        "model.tokenizer=bpe", "model.bpe_vocab=400", "stage.general.tokens=1024",
        "stage.target.tokens=1024"], cache_dir=str(cache))
    files = list(cache.glob("bpe-400-*.json"))
    assert len(files) == 1 and trainer.tok.kind == "bpe" and trainer.tok.vocab_size <= 400
    stamp = files[0].stat().st_mtime_ns
    run(tmp_path, registry, overrides=["model.tokenizer=bpe", "model.bpe_vocab=400",
                                       "stage.general.tokens=1024", "stage.target.tokens=1024"],
        cache_dir=str(cache))
    assert files[0].stat().st_mtime_ns == stamp


@pytest.mark.parametrize(("overrides", "message"), [
    (["study.metric=eval.target.accuracy", "study.mode=max"],
     "'target' is evaluated as causal_lm"),
    (["model.n_head=3"], "n_embd (32) must be a multiple of n_head (3)"),
    (["data.target={dataset = 'arith', digits = 2, operand_digits = 3}"],
     "operand_digits (3) must be at most digits (2)"),
])
def test_settings_that_could_only_fail_at_run_time_are_refused_by_validate(
        tmp_path, capsys, overrides, message):
    (tmp_path / "study.toml").write_text(GPT2)
    args = [a for o in overrides for a in ("--set", o)]
    assert main(["validate", str(tmp_path / "study.toml"), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_classifying_an_unlabelled_source_is_one_clear_error(tmp_path, capsys):
    args = ["--set", 'data.extra={dataset="pydoc"}', "--set", 'stage.classify.evals=["extra"]',
            "--set", "model.n_layer=1", "--set", "model.n_embd=32"]
    assert main(["trial", str(BERT_STUDY), *args]) == 2
    err = capsys.readouterr().err
    assert "data source 'extra' has no labels" in err and "Traceback" not in err


@pytest.mark.slow
def test_pretraining_on_the_target_texts_is_judged_by_the_final_objective(tmp_path, registry):
    # masked-LM on the very texts the classifier is then trained on, judged by accuracy
    study, config = prepare(tmp_path, registry, text=BERT_STUDY.read_text(), overrides=[
        "stage.pretrain.data=topics", "search.plan={order='pretrain>classify'}",
        "stage.pretrain.tokens=1024", "stage.pretrain.eval_every=512",
        "stage.classify.tokens=1024", "model.n_layer=1", "model.n_embd=32"])
    plan, trainer = start(registry, study, config)
    result = run_trial(plan, trainer)
    assert result.status == TrialStatus.COMPLETED
    assert 0 <= result.value <= 1  # eval.topics.accuracy, measured through the classifier


def test_a_stream_scores_answers_and_end_tokens_never_prompts():
    from autostage.components import Example
    from autostage_plugins.lm_data import Stream
    from autostage_plugins.tokenize import byte_tokenizer

    tok = byte_tokenizer()
    stream = Stream.build([Example("21", prompt="9+3="), Example("x"), Example("7", prompt="")],
                          tok)
    eos = tok.eos_id
    assert stream.ids.tolist() == [*b"9+3=", *b"21", eos, *b"x", eos, *b"7", eos]
    assert stream.scored.tolist() == [False] * 4 + [True] * 7
    assert stream.starts == [0, 7, 9] and stream.prompted
    assert Stream.build([], tok).ids.numel() == 0


def plays_study(plays, extra) -> str:
    """The plays classifier trained on the CSV `plays`, evaluated on `extra` too."""
    return tiny_classifier_study(
        f"data.plays.path={plays}",
        "data.extra.dataset=csv", f"data.extra.path={extra}", "data.extra.label_field=label",
        'stage.classify.evals=["extra"]',
        drop=("model.batch_size", "model.eval_batches"))


def write_plays(path, labels):
    path.write_text("text,label\n" + "".join(f"{label} {i},{label}\n"
                                             for i, label in enumerate(labels)))
    return path


@pytest.mark.slow
def test_one_label_vocabulary_numbers_every_source_alike(tmp_path, registry):
    plays = write_plays(tmp_path / "plays.csv", ["comedy", "history", "tragedy"] * 40)
    extra = write_plays(tmp_path / "extra.csv", ["tragedy", "comedy"] * 40)  # no history
    _, trainer = start(registry, *prepare(tmp_path, registry, plays_study(plays, extra)))
    assert trainer.labels == ["comedy", "history", "tragedy"] and trainer.num_labels == 3
    for source in ("plays", "extra"):
        for examples in trainer.data.examples[source].values():
            # each text begins with its label's name: its id must point at that name
            assert all(e.text.startswith(trainer.labels[e.label]) for e in examples)


@pytest.mark.slow
def test_a_label_the_classifier_has_no_class_for_is_one_clear_error_before_training(
        tmp_path, capsys):
    from autostage_plugins.datasets import _split

    labels = ["tragedy", "comedy"] * 40
    for i in _split(list(range(len(labels))), "val", 0.1, seed=0)[:1]:
        labels[i] = "romance"  # only in the held-out split: no train split teaches it
    plays = write_plays(tmp_path / "plays.csv", ["comedy", "history", "tragedy"] * 40)
    extra = write_plays(tmp_path / "extra.csv", labels)
    (tmp_path / "study.toml").write_text(plays_study(plays, extra))
    assert main(["trial", str(tmp_path / "study.toml")]) == 2
    out, err = capsys.readouterr()
    assert "data source 'extra' (val split): label 'romance' is not a class of the " \
        "classifier" in err and "comedy, history, tragedy" in err
    assert "Traceback" not in err and "tokens" not in out  # nothing was trained


@pytest.mark.slow
@pytest.mark.parametrize(("max_grad_norm", "clipped"), [(1e-6, 1.0), (0.0, 0.0), (1e6, 0.0)])
def test_train_metrics_report_the_share_of_clipped_steps(tmp_path, registry, max_grad_norm,
                                                         clipped):
    result, _ = run(tmp_path, registry, overrides=[
        f"model.max_grad_norm={max_grad_norm}", "search.plan={order='target'}",
        "stage.target.tokens=2048"])
    assert [e.metrics["train.clipped"] for e in result.evals] == [clipped] * 4


@pytest.mark.slow
def test_a_source_only_evaluated_brings_no_class_of_its_own(tmp_path, capsys):
    # extra's own train split has "history", which no stage trains the classifier on
    plays = write_plays(tmp_path / "plays.csv", ["comedy", "tragedy"] * 40)
    extra = write_plays(tmp_path / "extra.csv", ["tragedy", "comedy", "history"] * 40)
    (tmp_path / "study.toml").write_text(plays_study(plays, extra))
    assert main(["trial", str(tmp_path / "study.toml")]) == 2
    err = capsys.readouterr().err
    assert "data source 'extra' (train split): label 'history' is not a class of the " \
        "classifier, whose classes come from the train splits of plays: comedy, tragedy" in err
