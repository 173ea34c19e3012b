"""ASGI wrapper that starts the in-process scoring worker with the first connection.

daphne has no lifespan events, so the worker starts on the first request or
WebSocket the process serves; from then on it runs beside the server, and after
a restart it resumes whatever answers are still unscored.
"""

from __future__ import annotations

from typing import Any

from . import worker


class ScoringWorkerStarter:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            worker.ensure_started()
        await self.app(scope, receive, send)
