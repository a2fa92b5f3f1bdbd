"""Keeping the models of the best trials: a search moves them into RUN_DIR/models/, `best
--export-model` copies one out, and a transformers model opens with `from_pretrained`."""

import json
import random
import tempfile
from pathlib import Path

import pytest
from support import FIXTURES
from support.studies import tiny_lm_study, toy_study

from autostage.cli import main
from autostage.models import keeping_order
from autostage.records import TrialRecord, TrialStatus
from autostage.rundir import RunDir, write_json

OLD_RUN = FIXTURES / "run-b659e5d"
STUDY = toy_study(
    "study.name=models-test", "study.trials=6", "study.seed=3", "study.sampler=random",
    "study.keep_models=2",
    "data.target.difficulty=3.0",
    'search.plan.skip=["prereq"]',
    "search.optimizer.adamw.lr={ low = 3e-4, high = 2e-2, log = true }")


def searched(tmp_path, *overrides):
    """A toy search into tmp_path/run; its exit code, run directory and printed summary."""
    (tmp_path / "study.toml").write_text(STUDY)
    before = set(Path(tempfile.gettempdir()).glob("autostage-model-*"))
    code = main(["search", str(tmp_path / "study.toml"), "--out", str(tmp_path / "run"),
                 *[a for o in overrides for a in ("--set", o)]])
    assert set(Path(tempfile.gettempdir()).glob("autostage-model-*")) <= before  # none left
    return code, RunDir(tmp_path / "run")


def fake_models(run):
    """Every toy model (a fake: the toy's state as JSON) anywhere in the run directory."""
    return sorted(p.parent.relative_to(run.path) for p in run.path.rglob("toy-model.json"))


@pytest.fixture(scope="module")
def kept_two(ray_session, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("kept-two")
    code, run = searched(tmp_path)
    assert code == 0
    return run


@pytest.mark.slow
def test_a_search_keeps_the_models_of_its_best_trials_and_nothing_else(kept_two, capsys):
    run = kept_two
    best = [r.number for r in keeping_order(run.results(), ["min"])]
    assert len(best) > 2  # more trials had a value than are kept
    assert list(run.kept_models()) == sorted(best[:2])
    # once each: not a second copy in Ray's trial directories, no half-moved model
    assert fake_models(run) == [Path("models") / f"trial-{n}" for n in sorted(best[:2])]
    assert sorted(p.name for p in run.models_dir.iterdir()) == \
        [f"trial-{n}" for n in sorted(best[:2])]
    model = json.loads((run.model_dir(best[0]) / "toy-model.json").read_text())
    assert model["tokens"] == run.result(best[0]).tokens


@pytest.mark.slow
def test_the_search_summary_says_which_models_it_kept_and_their_size(ray_session, tmp_path,
                                                                      capsys):
    code, run = searched(tmp_path, "study.keep_models=1", "study.trials=2")
    out = capsys.readouterr().out
    (number,) = run.kept_models()
    assert code == 0 and number == keeping_order(run.results(), ["min"])[0].number
    size = (run.model_dir(number) / "toy-model.json").stat().st_size
    assert f"kept the model of trial {number} ({size} B) in {run.models_dir}/" in out


@pytest.mark.slow
def test_keep_models_0_keeps_none(ray_session, tmp_path, capsys):
    code, run = searched(tmp_path, "study.keep_models=0", "study.trials=2")
    assert code == 0 and fake_models(run) == [] and not run.models_dir.exists()
    assert "kept no model (study.keep_models = 0)" in capsys.readouterr().out
    code = main(["best", str(run.path), "--export-model", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "the search kept no models (study.keep_models = 0)" in err
    assert "--set study.keep_models=1" in err and not (tmp_path / "model").exists()


@pytest.mark.slow
def test_best_export_model_copies_the_kept_model_of_the_best_or_chosen_trial(
        kept_two, tmp_path, capsys):
    run = kept_two
    first, second = (r.number for r in keeping_order(run.results(), ["min"])[:2])
    assert main(["best", str(run.path), "--export-model", str(tmp_path / "best")]) == 0
    assert f"wrote {tmp_path / 'best'}: the model of trial {first} (" in capsys.readouterr().out
    assert (tmp_path / "best" / "toy-model.json").read_bytes() == \
        (run.model_dir(first) / "toy-model.json").read_bytes()
    (tmp_path / "empty").mkdir()
    assert main(["best", str(run.path), "--trial", str(second), "--export-model",
                 str(tmp_path / "empty"), "--export", str(tmp_path / "t.toml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"trial {second}  eval.target.loss = ")
    assert (tmp_path / "empty" / "toy-model.json").exists()
    assert f"trial {second}," in (tmp_path / "t.toml").read_text()


@pytest.mark.slow
def test_best_export_model_refuses_a_non_empty_directory_and_a_model_not_kept(
        kept_two, tmp_path, capsys):
    run = kept_two
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("the user's")
    assert main(["best", str(run.path), "--export-model", str(tmp_path / "full")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --export-model {tmp_path / 'full'}: it exists and is not an " \
        "empty directory; give a new or empty one\n"
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["mine.txt"]

    third = keeping_order(run.results(), ["min"])[2].number
    code = main(["best", str(run.path), "--trial", str(third), "--export", str(tmp_path / "t"),
                 "--export-model", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"the model of trial {third} was not kept: the search keeps the best 2 " \
        "(study.keep_models = 2; kept: trials " in err
    assert not (tmp_path / "t").exists() and not (tmp_path / "m").exists()  # nothing written


@pytest.mark.slow
def test_a_multi_objective_search_keeps_and_lists_its_pareto_front(ray_session, tmp_path,
                                                                   capsys):
    code, run = searched(tmp_path, 'study.metric=["eval.target.loss", "tokens"]',
                         "study.keep_models=3", "study.trials=8", "study.sampler=nsga2")
    assert code == 0
    front = keeping_order(run.results(), ["min", "min"])
    assert len(front) >= 2
    assert list(run.kept_models()) == sorted(r.number for r in front[:3])
    capsys.readouterr()
    assert main(["best", str(run.path), "--export-model", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "Pareto front:" in out and "eval.target.loss" in out and "tokens" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and
            line.split()[0].isdigit()]
    assert [int(row[0]) for row in rows] == [r.number for r in front]
    assert rows[0][2] == f"{front[0].values[1]:,}" and rows[0][-1] == front[0].plan
    assert f"exporting trial {front[0].number}, the front's best eval.target.loss" in out
    assert f"the model of trial {front[0].number}" in out


def run_dir_by_hand(tmp_path, study_section, records):
    """A run directory as a search leaves it, written directly: no Ray, milliseconds."""
    run = RunDir(tmp_path / "run")
    write_json(run.study_json, {"study": {"study": study_section}, "overrides": []})
    for record in records:
        run.write_result(record)
    return run


SECTION = {"name": "hand", "metric": "eval.target.loss", "mode": "min", "keep_models": 1}


def test_a_trainer_without_export_is_named_when_its_model_is_asked_for(tmp_path, capsys):
    run = run_dir_by_hand(tmp_path, SECTION, [TrialRecord(0, TrialStatus.COMPLETED,
                                                          values=(1.0,))])
    run.note_no_model(0, "its trainer's run (PlainRun) has no export(directory) method")
    assert main(["best", str(run.path), "--export-model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err == ("error: trial 0 kept no model: its trainer's run (PlainRun) has no "
                   "export(directory) method; a trainer with an export(directory) method "
                   "(e.g. transformers) keeps one\n")


def test_a_run_directory_of_an_earlier_version_has_no_models_and_says_so(tmp_path, capsys):
    assert main(["best", str(OLD_RUN), "--export-model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {OLD_RUN} was written by an autostage that kept no models; "
                          f"re-run it: `autostage best {OLD_RUN} --trial 1 --export trial.toml`")
    assert err.count("\n") == 1 and not (tmp_path / "m").exists()


def test_best_trial_names_a_trial_without_a_result(tmp_path, capsys):
    run = run_dir_by_hand(tmp_path, SECTION, [TrialRecord(0, TrialStatus.COMPLETED,
                                                          values=(1.0,)),
                                              TrialRecord(2, TrialStatus.PRUNED, values=(2.0,))])
    assert main(["best", str(run.path), "--trial", "1"]) == 2
    assert capsys.readouterr().err == (f"error: --trial 1: {run.path} holds no result of "
                                       "trial 1; trials with one: 0, 2\n")
    assert main(["best", str(run.path), "--trial", "2", "--export-model",
                 str(tmp_path / "m")]) == 2
    assert "trial 2 kept no model: it is pruned, and only trials that finish with a value " \
        "keep one" in capsys.readouterr().err


def test_a_search_may_resume_keeping_another_number_of_models(tmp_path, registry):
    from autostage import load_study
    from autostage.search_start import check_resume

    (tmp_path / "study.toml").write_text(STUDY)
    study = load_study(tmp_path / "study.toml", registry, [])
    run = RunDir(tmp_path / "run")
    dump = study.model_dump(mode="json")
    dump["study"]["keep_models"] = 5
    write_json(run.study_json, {"study": dump, "overrides": []})
    check_resume(study, run)  # refused before: "the study changed ... in: study.keep_models"
    del dump["study"]["keep_models"]  # a run directory from before models were kept
    write_json(run.study_json, {"study": dump, "overrides": []})
    check_resume(study, run)


def test_the_keeping_order_is_best_first_and_the_front_by_its_first_metric():
    records = [TrialRecord(0, TrialStatus.COMPLETED, values=(2.0, 10)),
               TrialRecord(1, TrialStatus.COMPLETED, values=(1.0, 30)),
               TrialRecord(2, TrialStatus.PRUNED, values=(0.5, 5)),
               TrialRecord(3, TrialStatus.STOPPED, values=(1.0, 20)),
               TrialRecord(4, TrialStatus.COMPLETED, values=(3.0, 40)),
               TrialRecord(5, TrialStatus.FAILED)]
    assert [r.number for r in keeping_order(records, ["min"])] == [1, 3, 0, 4]
    assert [r.number for r in keeping_order(records, ["max"])] == [4, 0, 1, 3]
    assert [r.number for r in keeping_order(records, ["min", "min"])] == [3, 0]
    assert [r.number for r in keeping_order(records, ["min", "max"])] == [1, 4]


# --- transformers: the kept model opens with from_pretrained ------------------------------------

GPT2 = tiny_lm_study("model.eval_batches=1",
                     "stage.general.tokens=2048", "stage.target.tokens=1024")
TEXT = "12+34=46 — naïve café, 日本語 🎉 <pad>\n\tend"


def trained(tmp_path, registry, study_text, overrides=()):
    """The trainer of a trial of `study_text`, run in-process (no Ray)."""
    from autostage import load_study, prepare_trial, sample_config

    (tmp_path / "study.toml").write_text(study_text)
    study = load_study(tmp_path / "study.toml", registry, list(overrides))
    trial = prepare_trial(study, registry, sample_config(study, registry, 0), 0,
                          cache_dir=str(tmp_path / "cache"))
    assert trial.run().status == TrialStatus.COMPLETED
    return trial.trainer


def same_logits(ours, theirs, **inputs):
    import torch

    with torch.no_grad():
        return torch.equal(ours.eval()(**inputs).logits, theirs.eval()(**inputs).logits)


@pytest.mark.slow
def test_a_kept_gpt2_opens_with_from_pretrained_and_gives_the_same_logits(tmp_path, registry):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = trained(tmp_path, registry, GPT2)
    run.export(str(tmp_path / "model"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    ids = run.tok.encode(TEXT)
    assert ids == list(TEXT.encode()) and tokenizer.decode(ids) == TEXT
    # a text keeps its last 24 bytes: the context (32 positions) less a quarter, room for
    # a text-generation pipeline to generate in
    inputs = tokenizer(TEXT, return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == ids[-24:]
    assert tokenizer(TEXT[-12:])["input_ids"] == list(TEXT[-12:].encode())
    assert same_logits(run.models["causal_lm"], model, input_ids=inputs["input_ids"])


@pytest.mark.slow
def test_a_kept_bert_classifier_names_its_labels_and_puts_cls_first(tmp_path, registry):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rng = random.Random(0)
    rows = [{"text": " ".join(rng.choices(["apple", "iron", "pear", "zinc"], k=6)),
             "label": ["fruit", "metal"][rng.randint(0, 1)]} for _ in range(200)]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    study = tiny_lm_study(  # GPT2's model as a BERT, pretrained on the rows, then classifying
        "study.metric=eval.rows.accuracy", "study.mode=max", "model.arch=bert",
        "model.eval_batches=1",
        "data.rows.dataset=jsonl", f"data.rows.path={tmp_path / 'rows.jsonl'}",
        "data.rows.label_field=label",
        "stage.pretrain.data=rows", "stage.pretrain.objective=mlm", "stage.pretrain.tokens=1024",
        "stage.classify.data=rows", "stage.classify.objective=classify",
        "stage.classify.tokens=2048", "stage.classify.final=true",
        "search.optimizer.adamw.lr=2e-3",
        data=("rows",), stages=("pretrain", "classify"))
    run = trained(tmp_path, registry, study, ["search.plan={order='pretrain>classify'}"])
    assert run.labels == ["fruit", "metal"]
    run.export(str(tmp_path / "model"))
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert model.config.id2label == {0: "fruit", 1: "metal"}
    assert model.config.label2id == {"fruit": 0, "metal": 1}
    inputs = tokenizer(["pear zinc é", "iron"], return_tensors="pt", padding=True)
    assert inputs["input_ids"][1].tolist()[:5] == [run.tok.cls_id, *b"iron"]
    assert inputs["input_ids"][0].tolist() == [run.tok.cls_id, *"pear zinc é".encode()]
    assert same_logits(run.models["classify"], model, **inputs)


@pytest.mark.slow
def test_a_bpe_tokenizer_is_kept_with_the_ids_it_trained_with(tmp_path, registry):
    from transformers import AutoTokenizer

    run = trained(tmp_path, registry, GPT2, ["model.tokenizer=bpe", "model.bpe_vocab=400"])
    run.export(str(tmp_path / "model"))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    for text in (TEXT, "def f(x):\n    return x + 1  # ünïcödé"):
        assert tokenizer(text)["input_ids"] == run.tok.encode(text)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (run.tok.pad_id, run.tok.eos_id)


@pytest.mark.slow
def test_the_byte_tokenizer_encodes_exactly_as_ours_through_auto_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    from autostage_plugins.tokenize import byte_tokenizer, for_transformers

    ours = byte_tokenizer()
    for_transformers(ours, "causal_lm").save_pretrained(tmp_path)
    theirs = AutoTokenizer.from_pretrained(tmp_path)
    for text in (TEXT, "", "\x00\x7f ÿ", "<eos><cls>"):
        assert theirs(text)["input_ids"] == ours.encode(text)
        assert theirs.decode(ours.encode(text)) == text
    assert (theirs.pad_token_id, theirs.eos_token_id, theirs.mask_token_id,
            theirs.cls_token_id, len(theirs)) == (256, 257, 258, 259, 260)
