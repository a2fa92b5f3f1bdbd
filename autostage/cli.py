"""The `autostage` command. Only argparse at import time: `--help` must start fast, and each
command imports what it needs (never torch or Ray unless it trains or searches)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from autostage.errors import AutostageError

    try:
        return args.run(args)
    except AutostageError as e:
        print(f"error: {e}" if "\n" not in str(e) else str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    from autostage import __version__

    p = argparse.ArgumentParser(
        prog="autostage",
        description="Search training strategies (stage order, LR path, optimizer) for "
        "language models.",
    )
    p.add_argument("--version", action="version", version=f"autostage {__version__}")
    sub = p.add_subparsers(title="commands", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check study files without running anything")
    v.add_argument("studies", nargs="+", metavar="STUDY")
    _add_set(v)
    v.set_defaults(run=_validate)

    t = sub.add_parser("trial", help="run one sampled trial locally (no Ray), printing each "
                       "eval and stage-policy decision")
    t.add_argument("study", metavar="STUDY")
    _add_set(t)
    t.add_argument("--seed", type=int, default=None, help="sampling and training seed "
                   "(default: the study's)")
    t.add_argument("--threads", type=int, default=0, metavar="N", help="torch threads "
                   "(default: the study's resources.threads, which `best --export` sets to the "
                   "count the trial ran with, so the replay is bit for bit; else torch's own)")
    t.add_argument("-v", "--verbose", action="store_true", help="also print train metrics "
                   "(and the traceback of a trial that raises)")
    t.set_defaults(run=_trial)

    s = sub.add_parser("search", help="search the study: Ray Tune trials, Optuna sampling")
    s.add_argument("study", metavar="STUDY")
    _add_set(s)
    s.add_argument("--trials", type=int, help="number of trials (overrides study.trials)")
    s.add_argument("--parallel", type=int, help="trials at once (overrides study.parallel)")
    s.add_argument("--out", metavar="DIR", help="run directory (default: runs/<study name>)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted search "
                   "in its run directory to exactly the requested number of trials")
    s.add_argument("--address", metavar="ADDR", help="join an existing Ray cluster: HOST:PORT, "
                   "or 'auto' (the one RAY_ADDRESS or `ray start` names); default: a local "
                   "Ray of the search's own")
    s.add_argument("--checkpoints", metavar="URI", help="where Ray keeps stage checkpoints "
                   "and exported models: s3://bucket/prefix, gs://..., or a folder every node "
                   "sees (overrides study.checkpoints; default: the run directory)")
    s.add_argument("-v", "--verbose", action="store_true", help="show Ray's own output")
    s.set_defaults(run=_search)

    b = sub.add_parser("best", help="show the best trial of a run directory (of a "
                       "multi-objective study: its Pareto front); export it or its model")
    b.add_argument("run_dir", metavar="RUN_DIR")
    b.add_argument("--trial", type=int, metavar="N", help="the trial to show and export "
                   "(default: the best; multi-objective: the front's best by the first metric)")
    b.add_argument("--export", metavar="FILE", help="write a study file that re-runs the "
                   "trial's configuration, everything fixed")
    b.add_argument("--export-model", metavar="DIR", help="copy the trial's kept model (its "
                   "final weights and tokenizer) into DIR, a new or empty directory")
    b.set_defaults(run=_best)

    r = sub.add_parser("report", help="write a run directory's study report: one HTML file "
                       "of Plotly figures (works while the study runs)")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("-o", "--output", metavar="FILE", help="where to write it "
                   "(default: RUN_DIR/report.html)")
    r.add_argument("--cdn", action="store_true", help="load plotly.js from its CDN: a small "
                   "file that needs the network to open (default: inlined, opens offline)")
    r.set_defaults(run=_report)

    pl = sub.add_parser("plugins", help="list installed plugins and what they register; "
                        "--fields: the settings of their components")
    pl.add_argument("--fields", action="append", default=[], metavar="KIND[.NAME]",
                    help="print the fields (type, default, bounds, description) of every "
                    "component of KIND (e.g. dataset), or of one (dataset.csv; a NAME alone "
                    "when one kind has it), as markdown tables (repeatable)")
    pl.set_defaults(run=_plugins)
    return p


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a study value, e.g. study.trials=4 or "
                   "stage.target.tokens=20000 (repeatable)")


def _validate(args: argparse.Namespace) -> int:
    from autostage.check import load_study
    from autostage.errors import StudyError
    from autostage.host import load_registry
    from autostage.space import compile_space

    registry = load_registry()
    failed = 0
    for path in args.studies:
        try:
            study = load_study(path, registry, args.overrides)
        except StudyError as e:
            print(e.render(), file=sys.stderr)
            failed += 1
            continue
        space = compile_space(study, registry)
        searched = _count_searched(space)
        counts = [(len(study.stage), "stage"), (len(space.plans), "stage plan"),
                  (searched, "searched parameter"), (study.study.trials, "trial")]
        print(f"ok: {path} — " + ", ".join(f"{n} {what}{'' if n == 1 else 's'}"
                                            for n, what in counts))
    return 2 if failed else 0


def _count_searched(space) -> int:
    count = sum(len(k.names) > 1 for k in space.kinds) + (len(space.plans) > 1)
    for ks in space.kinds:
        for _, params in ks.params:
            count += sum(p.type != "fixed" for p in params)
    return count + sum(p.type != "fixed" for p in space.mixes)


def _trial(args: argparse.Namespace) -> int:
    from autostage import load_registry, load_study, prepare_trial, sample_config
    from autostage.build import lineage_params
    from autostage.errors import AutostageError
    from autostage.records import TrialStatus

    registry = load_registry()
    study = load_study(args.study, registry, args.overrides)
    seed = study.study.seed if args.seed is None else args.seed
    params = lineage_params(study) or sample_config(study, registry, seed)
    print(f"trial of study '{study.study.name}' (seed {seed})")
    for step in study.lineage[1:]:
        print(f"  then, after {step.after_tokens:,} tokens, trial {step.trial}'s settings")
    for key in sorted(params):
        print(f"  {key} = {_fmt(params[key])}")
    printer = _EvalPrinter(study.study.metrics[0], args.verbose)
    try:
        result = prepare_trial(study, registry, params, seed,
                               threads=_threads(args, study)).run(report=printer)
    except AutostageError:
        raise  # bad input found while starting or training: one line, exit 2
    except Exception as e:  # a search records this trial as failed, with this reason
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"{TrialStatus.FAILED}: {_error_line(e)} — no value, after {printer.count} "
              "evals" + ("" if args.verbose else " (-v shows the traceback)"))
        return 1
    value = result.value
    shown = f"{study.study.metrics[0]} = {value:.6g}" if value is not None else "no value"
    if result.evals and result.evals[-1].restored_from is not None:
        shown += f" (the weights of its eval at {result.evals[-1].restored_from:,} tokens)"
    print(f"{result.status}{': ' + result.reason if result.reason else ''} — {shown}, "
          f"{result.tokens:,} tokens, {len(result.evals)} evals")
    return 1 if result.status == TrialStatus.FAILED else 0


def _threads(args: argparse.Namespace, study) -> int:
    """--threads, else the study's resources.threads (0: torch's default)."""
    return max(0, args.threads) or study.study.resources.threads


class _EvalPrinter:
    """Prints one line per eval: stage, tokens, LR, eval metrics and the policy's decision."""

    def __init__(self, metric: str, verbose: bool) -> None:
        self.metric, self.verbose = metric, verbose
        self.count = 0  # evals printed so far

    def __call__(self, ev) -> None:
        self.count += 1
        from autostage.decisions import describe
        from autostage.keys import eval_source

        shown = {k: v for k, v in ev.metrics.items()
                 if eval_source(k) is not None or self.verbose}
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items()))
        repeat = f"#{ev.visit + 1}" if ev.visit else ""
        decision = describe(ev.decision)
        if decision == "continue" and ev.stage_tokens >= ev.stage_budget:
            decision = "stage done"
        if ev.restored is not None and ev.restored_from is not None:
            decision += f" (weights of the eval at {ev.restored_from:,} tokens)"
        print(f"  {ev.stage + repeat:<12} tokens {ev.tokens:>10,}  lr {ev.lr:.2e}  {metrics}"
              f"  -> {decision}")


def _error_line(error: BaseException) -> str:
    """An exception as one line, as a search records a trial that raised: `Type: message`."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _search(args: argparse.Namespace) -> int:
    from autostage.api import NoTrialValue, search

    try:
        result = search(args.study, trials=args.trials, parallel=args.parallel, out=args.out,
                        resume=args.resume, address=args.address,
                        checkpoints=args.checkpoints, sets=args.overrides,
                        verbose=args.verbose)
    except NoTrialValue as e:  # it ran: its records are there, but it found nothing
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 130 if result.interrupted else 0


def _best(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autostage.commands import show_best

    return show_best(Path(args.run_dir), args.trial, args.export, args.export_model)


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autostage.commands import check_writable
    from autostage.report import write_report
    from autostage.rundir import RunDir

    if args.output:
        RunDir(Path(args.run_dir)).check_output(Path(args.output), "-o", ("report.html",))
        check_writable(Path(args.output), "-o")
    elif Path(args.run_dir, "study.json").exists():  # (else: "not a run directory" says it)
        check_writable(Path(args.run_dir, "report.html"), "the report",
                       "give -o FILE in a folder you can write")
    path = write_report(Path(args.run_dir), Path(args.output) if args.output else None,
                        cdn=args.cdn)
    print(f"wrote {path}")
    return 0


def _plugins(args: argparse.Namespace) -> int:
    from autostage.host import load_registry

    registry = load_registry()
    if args.fields:
        from autostage.fieldtables import render, resolve

        entries = [entry for spec in args.fields for entry in resolve(registry, spec)]
        print(render(registry, entries), end="")
        return 0
    rows = [("plugin", "distribution", "version", "registers")]
    for info in registry.plugins:
        registered = "; ".join(f"{kind}: {', '.join(names)}"
                               for kind, names in sorted(info.registered.items()))
        rows.append((info.name, info.dist, info.version, registered or "(report hooks only)"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
