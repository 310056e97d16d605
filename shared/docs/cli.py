"""``python -m shared.docs``: print one generated part (``show``), or keep a run's figures in docs/data/ for the
site (``record-demo``, ``record-bench``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..sources import REPO_ROOT
from . import __doc__ as PACKAGE_DOC
from . import records
from .generated import GENERATED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.docs", description=PACKAGE_DOC.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print one generated part")
    show.add_argument("name", choices=sorted(GENERATED))
    show.add_argument("argument", nargs="?", help="the part's argument (the demo-* parts: the experiment)")
    record = sub.add_parser("record-demo", help="keep a demo run's figures in docs/data/demos/ for the demo page")
    record.add_argument("summary", help="a demo run's report/summary.json (written to docs/data/demos/EXPERIMENT.json)")
    record.add_argument("--commit", required=True, help="the commit the run was made at")
    record.add_argument("--images-per-s", type=float, default=None, help="python -m bench.train's figure, if known")
    bench = sub.add_parser(
        "record-bench",
        help="keep benchmark runs' headline figures in docs/data/benchmarks.yaml for the Benchmarks page",
    )
    bench.add_argument("results", nargs="+", help="outputs/bench/NAME.json files of one run (read by bench/NAME.py)")
    bench.add_argument("--commit", required=True, help="the commit the run was made at (+dirty: with changes)")
    bench.add_argument(
        "--images-per-s",
        type=float,
        default=None,
        help="python -m bench.train's CPU images/s on this machine (default: train.json's, when among the results)",
    )
    bench.add_argument("--note", default=None, help="said beside the machine, e.g. that other work shared the CPU")
    args = parser.parse_args(argv)
    if args.command == "show":
        sys.stdout.write(GENERATED[args.name](*([args.argument] if args.argument else [])))
        return 0
    if args.command == "record-bench":
        try:
            entries = records.record_bench(
                [Path(p) for p in args.results], args.commit, args.images_per_s, note=args.note
            )
        except (ValueError, OSError) as error:
            print(f"record-bench: {error}", file=sys.stderr)
            return 2
        for entry in entries:
            print(f"recorded {entry['file']} ({len(entry['figures'])} figures) at {entry['commit']}")
        print(f"wrote {os.path.relpath(records.BENCHMARKS)}")
        return 0
    machine = {"train_images_per_s": args.images_per_s, "cores": os.cpu_count()}
    from ..artifacts import write_json_atomic

    record = records.record_demo(Path(args.summary), args.commit, machine)
    path = records.DEMOS / f"{record['experiment']}.json"
    write_json_atomic(path, record)
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0
