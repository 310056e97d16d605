"""The ``oncoxai`` command: what make does, for an installed distribution (``pip install oncoxai``) or a checkout.

    oncoxai run CONFIG [--set KEY=VALUE ...] [--variant V]    # every enabled stage, in order (make all)
    oncoxai stage NAME CONFIG [...]                           # one stage and the stages it reads (make stage-NAME)
    oncoxai plan CONFIG [...]                                 # validate, write the resolved config, list the stages
    oncoxai check-config CONFIG [...]                         # validate only
    oncoxai bundle CONFIG [...]                               # the collaborators' zip (make bundle)
    oncoxai fetch DATASET [...]                               # a public dataset's files (make fetch)
    oncoxai init DATA [--labels TABLE] [--out FILE]           # a commented config written from a data file
    oncoxai demo [FOLDER]                                     # the synthetic demo's data and config, then its run

Each stage runs in its own process (``python -m stages.<stage>``; ``oncoxai.stages.<stage>`` when installed), as
make's local runner runs it, and skips itself when its fingerprint says nothing it reads has changed; the order is
the stages' own declaration (each after the stages whose roles it reads). Paths in a config are relative to the
current folder, outputs go to ``$ONCOXAI_OUTPUTS`` (default ``outputs/``), as under make. A bad config or input
stops with one line naming it and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from . import INSTALLED, __version__, module


def _experiment(args: argparse.Namespace):
    from shared.pipeline import resolve

    return resolve(args.config, args.overrides, args.variant)


def _order(exp, wanted: list[str]) -> list[str]:
    """``wanted`` and every stage they read from, each after its upstream stages."""
    done: list[str] = []

    def visit(stage: str) -> None:
        for need in exp.upstream(stage):
            visit(need)
        if stage not in done:
            done.append(stage)

    for stage in wanted:
        visit(stage)
    return done


def _run_stages(stages: list[str], config_path: Path, force: bool) -> int:
    for stage in stages:
        command = [sys.executable, "-m", module(f"stages.{stage}"), "--config", str(config_path)]
        if force:
            command.append("--force")
        print(f"oncoxai: {stage}", file=sys.stderr, flush=True)
        code = subprocess.run(command).returncode
        if code != 0:
            print(f"oncoxai: {stage} failed (exit {code}); the stages after it did not run", file=sys.stderr)
            return code
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    exp, _, config_path = _experiment(args)
    return _run_stages(_order(exp, list(exp.stages)), config_path, args.force)


def cmd_stage(args: argparse.Namespace) -> int:
    exp, _, config_path = _experiment(args)
    if args.name not in exp.stages:
        from shared.errors import UserError

        raise UserError(f"{args.config}: stage '{args.name}' is not enabled (stages: {list(exp.stages)})")
    return _run_stages(_order(exp, [args.name]), config_path, args.force)


def cmd_plan(args: argparse.Namespace) -> int:
    exp, exp_dir, config_path = _experiment(args)
    print(f"experiment {exp.name}: resolved config {config_path}, outputs {exp_dir}")
    for stage in _order(exp, list(exp.stages)):
        reads = exp.upstream(stage)
        print(f"  {stage}" + (f"  (reads {', '.join(reads)})" if reads else ""))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from shared import config

    exp = config.load(args.config, args.overrides, variant=args.variant)
    print(f"{args.config}: valid (experiment {exp.name}; stages {', '.join(exp.stages)})")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from shared.bundle import main

    return main([args.config, *(a for o in args.overrides for a in ("--set", o)), *_variant(args)])


def cmd_fetch(args: argparse.Namespace) -> int:
    from fetch.cli import main

    return main(args.rest)


def cmd_init(args: argparse.Namespace) -> int:
    from .starter import write_config

    write_config(Path(args.data), Path(args.out), labels=args.labels, force=args.force)
    return 0


def configs_folder() -> Path:
    """The shipped configs: the checkout's configs/, or where the wheel installed them (share/oncoxai/configs)."""
    if not INSTALLED:
        return Path(__file__).resolve().parent.parent / "configs"
    return Path(sysconfig.get_path("data")) / "share" / "oncoxai" / "configs"


def cmd_demo(args: argparse.Namespace) -> int:
    """The main demo in FOLDER: its synthetic data (data/demo/), its config (demo.yaml), then ``oncoxai run``."""
    from fixtures.synthetic import main as fixture

    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    if not (Path("data/demo") / ".fixture").is_file():
        fixture(["transcriptome", "--out", "data/demo"])
        (Path("data/demo") / ".fixture").touch()
    shutil.copyfile(configs_folder() / "demo.yaml", "demo.yaml")
    run = argparse.Namespace(config="demo.yaml", overrides=args.overrides, variant=None, force=False)
    return cmd_run(run)


def _variant(args: argparse.Namespace) -> list[str]:
    return ["--variant", args.variant] if args.variant else []


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the experiment's YAML (configs/*.yaml, or one oncoxai init wrote)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    p.add_argument("--variant", help="apply the config's named variant")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="oncoxai",
        description="Explainable deep learning for tumour transcriptomics and radiogenomics: train classifiers with "
        "an honest protocol, explain them, measure how far the explanations can be trusted, report.",
        epilog="Each command's options: oncoxai COMMAND --help. Docs: docs/ (make docs) in the repository.",
    )
    top.add_argument("--version", action="version", version=f"oncoxai {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run every enabled stage of an experiment, in order (make all)")
    _config_args(p)
    p.add_argument("--force", action="store_true", help="rerun each stage even when nothing it reads changed")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("stage", help="run one stage and the stages it reads (make stage-NAME)")
    p.add_argument("name", help="preprocess, train_torch, train_tf_gradcam, train_3d_mri, explain, report")
    _config_args(p)
    p.add_argument("--force", action="store_true", help="rerun the stages even when nothing they read changed")
    p.set_defaults(func=cmd_stage)
    p = sub.add_parser("plan", help="validate a config, write the resolved config, list the stages in order")
    _config_args(p)
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("check-config", help="validate a config and its input files, nothing else")
    _config_args(p)
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("bundle", help="one zip of a finished experiment for collaborators (make bundle)")
    _config_args(p)
    p.set_defaults(func=cmd_bundle)
    p = sub.add_parser("fetch", help="download a public dataset's files, resumable and checksummed (make fetch)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="fetch's own arguments (oncoxai fetch --help)")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("init", help="write a commented config from a data file (.h5ad, or a CSV/TSV with --labels)")
    p.add_argument("data", help="the expression file: .h5ad, or a samples x genes / genes x samples CSV or TSV")
    p.add_argument("--labels", help="CSV/TSV: the table of sample id -> label (and group) columns")
    p.add_argument("--out", default="experiment.yaml", help="the config to write (default experiment.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("demo", help="the synthetic demo's data and config in FOLDER, then its run")
    p.add_argument("folder", nargs="?", default="oncoxai-demo", help="where (default oncoxai-demo/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from shared.errors import UserError

    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
