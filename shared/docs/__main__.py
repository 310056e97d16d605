"""``python -m shared.docs``: see ``shared.docs.cli``."""

from .cli import main

raise SystemExit(main())
