"""The transformers trainer's `norm`: each choice is a transformers architecture of its own
(GPT-2, OPT post-norm, Llama), so it trains, checkpoints and exports as what it is, and the
export opened by plain `transformers` computes what training computed."""

import pytest
from support.studies import tiny_lm_study

from autostage.build import build_trial
from autostage.check import load_study
from autostage.cli import main
from autostage.records import TrialStatus
from autostage.space import compile_space, decode, sample
from autostage.trial import run_trial

NORMS = ("pre-layernorm", "post-layernorm", "pre-rmsnorm")
# the module of each: a swapped-in norm would load back as the architecture's own
MODEL = {"pre-layernorm": "GPT2LMHeadModel", "post-layernorm": "OPTForCausalLM",
         "pre-rmsnorm": "LlamaForCausalLM"}
LM = tiny_lm_study("search.plan={order='general>target'}", "stage.general.tokens=2048",
                   "stage.target.tokens=2048", "model.eval_batches=2")
SEARCHED = tiny_lm_study(f"search.trainer.transformers.norm={list(NORMS)}")


def started(tmp_path, registry, norm, text=LM):
    """The plan and the trainer's run of a trial of `text` with `norm`, not yet trained."""
    (tmp_path / "study.toml").write_text(text)
    study = load_study(tmp_path / "study.toml", registry, [f"model.norm={norm}"])
    space = compile_space(study, registry)
    trainer, setup, plan = build_trial(study, registry, decode(space, sample(space, 0)), seed=0)
    return plan, trainer.start(setup)


def trained(tmp_path, registry, norm, text=LM):
    """A finished trial of `text` with `norm`: its result and its trainer's run."""
    plan, run = started(tmp_path, registry, norm, text)
    result = run_trial(plan, run)
    assert result.status == TrialStatus.COMPLETED, result.reason
    return result, run


def target_loss(run, model=None):
    from autostage_plugins.lm_eval import evaluate

    model = model or run.models["causal_lm"]
    return evaluate(model, "causal_lm", run.data, "target", run.cfg, run.tok,
                    run.device)["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("norm", NORMS)
def test_each_norm_trains_and_its_export_computes_the_recorded_loss(tmp_path, registry, norm):
    from transformers import AutoModelForCausalLM

    result, run = trained(tmp_path, registry, norm)
    recorded = result.evals[-1].metrics["eval.target.loss"]
    assert recorded < result.evals[0].metrics["eval.general.loss"]  # it learned something
    run.export(str(tmp_path / "model"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert type(loaded).__name__ == MODEL[norm] == type(run.models["causal_lm"]).__name__
    assert target_loss(run, loaded) == recorded  # the same computation, bit for bit


@pytest.mark.slow
@pytest.mark.parametrize("norm", NORMS)
def test_each_norm_checkpoints_and_restores_its_weights(tmp_path, registry, norm):
    import torch

    result, run = trained(tmp_path, registry, norm)
    recorded = result.evals[-1].metrics["eval.target.loss"]
    snapshot = run.snapshot()
    run.save(str(tmp_path / "ckpt"))
    with torch.no_grad():  # spoil every weight: restore and load must bring them all back
        for p in run.models["causal_lm"].parameters():
            p.add_(1.0)
    assert target_loss(run) != recorded
    run.restore(snapshot)
    assert target_loss(run) == recorded
    _, fresh = started(tmp_path, registry, norm)
    fresh.load(str(tmp_path / "ckpt"))
    assert target_loss(fresh) == recorded


def norm_modules(model):
    return [m for m in model.modules() if "Norm" in type(m).__name__]


@pytest.mark.slow
def test_the_norms_differ_in_the_model_not_only_in_its_name(tmp_path, registry):
    import torch

    # as built (LayerNorm gains 1, biases 0): what each norm does shows undisturbed
    two = tiny_lm_study("model.n_layer=2")  # block 0's output is no model's last hidden state
    models = {n: started(tmp_path, registry, n, two)[1].model("causal_lm").eval() for n in NORMS}
    kinds = {n: {type(m).__name__ for m in norm_modules(models[n])} for n in NORMS}
    assert kinds == {"pre-layernorm": {"LayerNorm"}, "post-layernorm": {"LayerNorm"},
                     "pre-rmsnorm": {"LlamaRMSNorm"}}
    # two per block, and a final norm before the head only where the blocks end un-normalised
    assert {n: len(norm_modules(m)) for n, m in models.items()} == \
        {"pre-layernorm": 5, "post-layernorm": 4, "pre-rmsnorm": 5}
    ids = torch.arange(32).reshape(1, 32)
    with torch.no_grad():
        first_block = {n: m(input_ids=ids, output_hidden_states=True).hidden_states[1][0]
                       for n, m in models.items()}
    # post-norm: what a block hands on is normalised (std 1 at each position); pre-norm:
    # the raw residual stream, whose scale is the embeddings' (std 0.02)
    assert float(first_block["post-layernorm"].std(-1).mean()) > 0.5
    assert float(first_block["pre-layernorm"].std(-1).mean()) < 0.5
    # RMSNorm keeps a vector's mean, LayerNorm removes it: a constant vector shows which
    constant = torch.full((1, 32), 3.0)
    with torch.no_grad():
        rms, layer = (norm_modules(models[n])[0] for n in ("pre-rmsnorm", "pre-layernorm"))
        assert float((rms(constant) - rms.weight).abs().max()) < 1e-3
        assert float((layer(constant) - layer.bias).abs().max()) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["post-layernorm", "pre-rmsnorm"])
def test_an_lm_hands_its_backbone_to_a_classifier_under_each_norm(tmp_path, registry, norm):
    from transformers import AutoModelForSequenceClassification

    from autostage_plugins.lm_eval import evaluate

    text = tiny_lm_study("data.topics={dataset='pydoc', variant='classify', classes=2, "
                         "passage_chars=64}", "stage.target.data=topics",
                         "stage.target.objective=classify", "stage.target.tokens=1024",
                         "stage.general.tokens=1024", "search.plan={order='general>target'}",
                         "study.metric=eval.topics.accuracy", "study.mode=max",
                         data=["general", "topics"])
    result, run = trained(tmp_path, registry, norm, text)
    lm, clf = run.models["causal_lm"], run.models["classify"]
    assert all(a is b for a, b in zip(lm.base_model.children(), clf.base_model.children(),
                                          strict=True))
    run.export(str(tmp_path / "model"))
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert type(loaded).__name__ == type(clf).__name__
    again = evaluate(loaded, "classify", run.data, "topics", run.cfg, run.tok, run.device)
    assert again["loss"] == result.evals[-1].metrics["eval.topics.loss"]


@pytest.mark.slow
@pytest.mark.parametrize("norm", NORMS)
def test_scaled_residual_finds_the_residual_projections_of_every_norm(norm):
    import torch
    from transformers import AutoModelForCausalLM

    from autostage_plugins.inits import ScaledResidual
    from autostage_plugins.norms import config

    torch.manual_seed(0)
    shape = {"vocab_size": 64, "context": 32, "n_embd": 64, "n_layer": 2, "n_head": 2,
             "dropout": 0.0, "eos_id": 0}
    model = AutoModelForCausalLM.from_config(config("gpt2", norm, shape))
    found = ScaledResidual(std=0.04)._projections(model)
    assert len(found) == 4  # attention output and MLP output, in each of the 2 blocks
    ScaledResidual(std=0.04).apply(model)
    for module in found.values():  # 0.04 / sqrt(2 * 2 blocks)
        assert float(module.weight.detach().std()) == pytest.approx(0.02, rel=0.1)


# --- choosing and searching a norm ----------------------------------------------------------


def test_the_norm_is_a_searched_categorical_choice(tmp_path, registry):
    (tmp_path / "study.toml").write_text(SEARCHED)
    study = load_study(tmp_path / "study.toml", registry)
    space = compile_space(study, registry)
    param, = space.kind("trainer").params_of("transformers")
    assert (param.key, param.type, param.choices) == \
        ("trainer.transformers.norm", "categorical", NORMS)
    drawn = set()
    for seed in range(12):
        config = decode(space, sample(space, seed))
        trainer, _, _ = build_trial(study, registry, config, seed=seed)
        drawn.add(trainer.norm)
    assert drawn == set(NORMS)


@pytest.mark.parametrize(("sets", "line"), [
    (["model.arch=bert", "model.norm=pre-rmsnorm"],
     'model: norm = "pre-rmsnorm" does not exist for arch "bert"; the norms each arch builds: '
     "gpt2: pre-layernorm, post-layernorm, pre-rmsnorm; bert: post-layernorm"),
    (["model.pretrained=org/tiny", "model.norm=post-layernorm"],
     'model: norm = "post-layernorm" with pretrained: a pretrained model comes with its own '
     "normalisation; leave norm unset, or drop pretrained to build one"),
    (["model.arch=bert", "stage.general.objective=mlm", "stage.target.objective=mlm",
      "search.trainer.transformers.norm=['post-layernorm', 'pre-layernorm']"],
     "search.trainer.transformers.norm: choice 'pre-layernorm': norm = \"pre-layernorm\" "
     'does not exist for arch "bert"'),
])
def test_a_norm_that_does_not_exist_is_one_line_from_validate(tmp_path, capsys, sets, line):
    (tmp_path / "study.toml").write_text(tiny_lm_study(*sets))
    assert main(["validate", str(tmp_path / "study.toml")]) == 2
    err = capsys.readouterr().err
    assert sum(line in row for row in err.splitlines()) == 1, err
