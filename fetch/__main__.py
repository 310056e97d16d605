"""``python -m fetch``: see ``fetch`` (the package's docstring) and ``fetch.cli``."""

import sys

from shared.errors import UserError

try:
    from fetch.cli import main
except UserError as exc:  # a malformed fetch/datasets.yaml: one line and exit code 2, like any other bad input
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

if __name__ == "__main__":
    raise SystemExit(main())
