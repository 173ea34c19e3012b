"""``python -m realtime.soak``."""

from .cli import main

raise SystemExit(main())
