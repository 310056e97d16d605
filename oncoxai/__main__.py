"""python -m oncoxai: the oncoxai command (oncoxai.cli)."""

from .cli import main

raise SystemExit(main())
