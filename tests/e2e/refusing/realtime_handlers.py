"""Refuse every connection in ``on_connect``, and say so in the server log (one line per attempt)."""

from __future__ import annotations

import logging

from realtime import handlers

from . import REFUSED_LINE

logger = logging.getLogger("realtime")


@handlers.on_connect
def refuse(ctx: handlers.ConnectionContext) -> None:
    logger.warning(REFUSED_LINE)
    raise handlers.Reject("Closed for the night.")
