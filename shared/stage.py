"""The entry point of every stage: ``python -m stages.<name> --config FILE [--set key=value ...] [--force]``.

It validates the whole config before any work, skips the stage when its manifest is current, seeds every
generator, runs the stage's work inside an atomic ``StageRun`` and turns user mistakes into one line on stderr
with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
from collections.abc import Callable

from . import config
from .artifacts import StageRun
from .errors import UserError
from .logs import get_logger, setup_logging
from .seeding import seed_everything

#: write failures that are the machine's, not the code's: disk full, quota, file too large, read-only, permissions
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _terminate(signum, frame):  # turn SIGTERM into an exception so the temporary folder is cleaned up
    raise SystemExit(128 + signum)


def main(stage: str, work: Callable[[StageRun], None], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m stages.{stage}", description=(sys.modules["__main__"].__doc__ or "").strip() or None
    )
    parser.add_argument("--config", required=True, help="experiment YAML (configs/<experiment>.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train_torch.epochs=2 (repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="run even when the manifest is up to date")
    args = parser.parse_args(argv)
    setup_logging()
    log = get_logger(f"stages.{stage}")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        exp = config.load(args.config, args.overrides)
        if stage not in exp.stages:
            raise UserError(f"{args.config}: stage '{stage}' is not enabled (stages: {list(exp.stages)})")
        rank = int(os.environ.get("RANK", "0"))  # torchrun: only rank 0 writes the stage's output
        run = StageRun(exp, stage, publish=rank == 0)
        if not args.force and run.is_current():
            log.info("%s: up to date (%s)", stage, run.final)
            return 0
        seed_everything(exp.seed)
        t0 = time.time()
        with run:
            work(run)
        log.info("%s: finished in %.1f s -> %s", stage, time.time() - t0, run.final)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        where = exc.filename or "the outputs folder"
        print(
            f"error: {where}: cannot write ({os.strerror(exc.errno)}): free disk space or make the outputs folder "
            "writable, then run again; the previous result, if any, is unchanged",
            file=sys.stderr,
        )
        return 2
