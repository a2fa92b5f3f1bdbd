"""The `autostage` command as a user runs it."""

import subprocess
import sys

from support import FIXTURES

from autostage.cli import main

QUICKSTART = "studies/quickstart-toy.toml"


def test_trial_prints_each_eval_and_decision(capsys):
    code = main(["trial", QUICKSTART, "--set", "search.stage_policy={plateau = {patience = 1}}",
                 "--set", "search.plan={}"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if "tokens" in line and "->" in line]
    stages = [line.split()[0] for line in lines]
    assert stages[0] == "general" and stages[-1] == "target"
    assert "prereq" in stages
    assert all("eval.target.loss" in line and "lr " in line for line in lines)
    assert "plan.order = general>prereq>target" in out
    assert out.splitlines()[-1].startswith("completed")


def test_trial_with_a_diverging_lr_exits_1_with_the_reason(capsys):
    code = main(["trial", QUICKSTART, "--set", "search.optimizer={adamw = {lr = 0.9}}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "failed: non-finite loss at stage" in out


def test_set_override_reaches_the_trial(capsys):
    main(["trial", QUICKSTART, "--set", "stage.target.tokens=20000", "--set", "search.plan={}",
          "--set", "stage.general.tokens=4096", "--set", "stage.prereq.tokens=4096"])
    last = capsys.readouterr().out.splitlines()[-1]
    assert "28,672 tokens" in last  # 4096 + 4096 + 20000 rounded up to whole 2048-token steps


def test_help_and_version_start_without_heavy_imports():
    code = (
        "import sys\n"
        "from autostage.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'ray', 'optuna', 'transformers', 'plotly') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "validate" in out and "trial" in out and "plugins" in out
    assert "HEAVY []" in out
    version = subprocess.run([sys.executable, "-m", "autostage.cli", "--version"],
                             capture_output=True, text=True).stdout
    assert version.startswith("autostage ")


def test_the_branching_protocol_and_the_search_packages_pure_modules_load_no_ray_or_optuna():
    # a brancher plugin, and the tests of one, run without a search's heavy imports
    code = (
        "import sys\n"
        "import autostage.branching, autostage.testing.brancher_contract\n"
        "import autostage_plugins.trial_schedulers\n"
        "import autostage.search, autostage.search.messages, autostage.search.retention\n"
        "import autostage.search.outage\n"
        "print('HEAVY', [m for m in ('torch', 'ray', 'optuna') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out


def test_validate_and_trial_do_not_import_torch_or_ray():
    code = (
        "import sys\n"
        "from autostage.cli import main\n"
        f"main(['trial', '{QUICKSTART}'])\n"
        "print('HEAVY', [m for m in ('torch', 'ray') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out


def test_report_and_export_never_write_over_the_run_directorys_files(tmp_path, capsys):
    import shutil

    fixture = FIXTURES / "run-b659e5d"
    run = tmp_path / "run"
    shutil.copytree(fixture, run)
    study_json = (run / "study.json").read_text()
    for args in (["report", str(run), "-o", str(run / "study.json")],
                 ["report", str(run), "-o", str(tmp_path)],
                 ["best", str(run), "--export", str(run / "study.toml")]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert (run / "study.json").read_text() == study_json
    assert main(["report", str(run), "-o", str(run / "report.html")]) == 0
