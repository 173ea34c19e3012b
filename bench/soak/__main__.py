"""``python -m bench.soak``."""

from .cli import main

raise SystemExit(main())
