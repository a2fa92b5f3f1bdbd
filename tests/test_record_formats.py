"""Run records state their format (docs/records.md): every JSON file and events line a run
directory holds carries `"format": "autostage.<record>/2"`; files without it (version 1,
tests/fixtures/run-b659e5d) still open; a newer major version is refused in one line naming
the file; and the documented fields are exactly the keys written, so the doc cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from autostage.cli import main
from autostage.decisions import Advance, Eval, Rewind, ScaleLR, Stop, decision_to_json
from autostage.errors import AutostageError
from autostage.records import (
    FORMAT_VERSION,
    Branch,
    EvalRecord,
    TrialRecord,
    TrialStatus,
    check_format,
)
from autostage.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "records.md"
FIXTURE = REPO / "tests" / "fixtures" / "run-b659e5d"

BRANCH = Branch(parent=0, stage="target", tokens=100, evals=3, checkpoint="ray-x/trial-0/c",
                prefix={"optimizer": "adamw"}, seed=0, done=("prereq",))
EVAL = Eval("target", 0, 200, 100, 400, 1e-3, {"eval.target.loss": 1.5, "train.loss": 1.4},
            "eval.target.loss", "min", ScaleLR(0.5), {"eval.target.loss": 1.2}, 150)


def written_run(tmp_path: Path) -> RunDir:
    """A run directory with one of every record, written by autostage's own writers."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_settings({"study": {"name": "x", "metric": "eval.target.loss", "mode": "min"}},
                       ["study.trials=1"], "study.toml")
    ev = EvalRecord(EVAL, time=1.0, checkpoint="ray-x/trial-1/checkpoint_000000", worker=7)
    run.write_branch(1, BRANCH)
    run.append_event(1, ev)
    run.write_result(TrialRecord(1, TrialStatus.COMPLETED, values=(1.2,), tokens=100, seed=1,
                                 config={"optimizer": "sgd", "plan.order": "target"},
                                 started=1.0, ended=2.0, evals=(ev,), branch=BRANCH,
                                 threads=2))
    return run


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_record_a_run_writes_states_its_format(tmp_path):
    run = written_run(tmp_path)
    trial = run.trial_dir(1)
    files = {"study": run.study_json, "result": trial / "result.json",
             "branch": trial / "branch.json"}
    for kind, path in files.items():
        assert read(path)["format"] == f"autostage.{kind}/{FORMAT_VERSION}", path
    lines = (trial / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["format"] for line in lines] == ["autostage.eval/2"]
    assert read(trial / "result.json")["branch"].get("format") is None  # only at the top
    record = run.trials()[0]  # and they read back
    assert record.branch == BRANCH and record.evals[0].eval == EVAL and record.threads == 2


def test_a_run_of_version_1_still_opens(capsys):
    run = RunDir(str(FIXTURE))  # a str, as users write it
    assert all("format" not in read(run.trial_dir(n) / "result.json") for n in run.numbers())
    assert check_format(run.settings(), "study", run.study_json) == 1
    records = run.trials()
    assert [r.number for r in records] == list(range(6))
    assert all(r.evals and r.evals[0].eval.metrics for r in records)
    assert main(["best", str(FIXTURE)]) == 0
    assert "best:" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "kind"), [
    ("trials/1/result.json", "result"), ("trials/1/branch.json", "branch"),
    ("study.json", "study"),
])
def test_a_newer_major_version_is_refused_in_one_line(tmp_path, name, kind):
    run = written_run(tmp_path)
    path = run.path / name
    path.write_text(json.dumps({**read(path), "format": f"autostage.{kind}/3"}))
    with pytest.raises(AutostageError) as refused:
        {"result": lambda: run.result(1), "branch": lambda: run.branch(1),
         "study": run.settings}[kind]()
    message = str(refused.value)
    assert "\n" not in message
    assert message == (f"{path}: written in format autostage.{kind}/3, newer than this "
                       f"autostage reads (autostage.{kind}/2); upgrade autostage "
                       "(pip install -U autostage)")


def test_a_newer_events_line_is_refused_and_the_cli_says_it_in_one_line(tmp_path, capsys):
    run = written_run(tmp_path)
    events = run.trial_dir(1) / "events.jsonl"
    line = json.loads(events.read_text())
    events.write_text(json.dumps({**line, "format": "autostage.eval/3.1"}) + "\n")
    with pytest.raises(AutostageError, match=r"events.jsonl: written in format "
                       r"autostage.eval/3.1, newer .* upgrade autostage"):
        run.trials()
    assert main(["best", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "autostage.eval/3.1" in err and str(events) in err


def test_a_newer_minor_version_and_unknown_fields_are_read(tmp_path):
    run = written_run(tmp_path)
    path = run.trial_dir(1) / "result.json"
    path.write_text(json.dumps({**read(path), "format": "autostage.result/2.4", "new": 1}))
    assert run.result(1).values == (1.2,)


def test_a_record_of_another_kind_is_refused():
    with pytest.raises(AutostageError, match="'autostage.eval/2' is not an autostage result"):
        check_format({"format": "autostage.eval/2"}, "result", "r.json")


# --- the schema doc ------------------------------------------------------------------------


def documented_fields() -> dict[str, list[str]]:
    """Each table of docs/records.md by its heading: the field names of its first column."""
    tables: dict[str, list[str]] = {}
    heading = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif (m := re.match(r"\| `([a-z_]+)` \|", line)) and "|---|" not in line:
            tables.setdefault(heading, []).append(m[1])
    return tables


def written_fields(tmp_path: Path) -> dict[str, list[str]]:
    """The keys autostage writes, by the doc heading that describes them."""
    run = written_run(tmp_path)
    trial = run.trial_dir(1)
    result = read(trial / "result.json")
    decisions = [decision_to_json(d) for d in (ScaleLR(0.5), Advance("x"), Rewind(0.5),
                                               Stop("why"))]
    return {
        "`study.json` — `autostage.study/2`": list(read(run.study_json)),
        "`trials/<n>/result.json` — `autostage.result/2`": list(result),
        "`decisions[]` in result.json": list(result["decisions"][0]),
        "`trials/<n>/branch.json` — `autostage.branch/2`": list(read(trial / "branch.json")),
        "`trials/<n>/events.jsonl` — `autostage.eval/2`":
            list(json.loads((trial / "events.jsonl").read_text())),
        "`decision`": list(dict.fromkeys(k for d in decisions for k in d)),
    }


def test_the_schema_doc_lists_exactly_the_fields_written(tmp_path):
    documented = {h: fields for h, fields in documented_fields().items()
                  if h != "Other files"}
    written = written_fields(tmp_path)
    assert set(documented) == set(written)
    for heading, fields in written.items():
        assert documented[heading] == fields, heading  # in the order they are written
    assert set(read(tmp_path / "run" / "trials/1/result.json")["branch"]) == \
        set(written["`trials/<n>/branch.json` — `autostage.branch/2`"]) - {"format"}
