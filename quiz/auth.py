"""Players authorize with their token: ``realtime``'s CUSTOM auth mode (the Lambda authorizer's twin).

The site sets ``REALTIME["CUSTOM_AUTHORIZER"]["HANDLER"] = "quiz.auth.player_authorizer"``;
the player page sends the token as the ``authorization`` credential. The handler
context carries the player and game, which the quiz namespace's handlers check.
"""

from __future__ import annotations

import time
from typing import Any

from .selectors import player_for_token

# A player's token never changes: this process remembers each answer for a while,
# so connecting, subscribing three times and publishing cost one lookup, not five.
TOKEN_TTL = 300.0
_known: dict[str, tuple[float, dict[str, Any] | None]] = {}
_MAX_KNOWN = 200_000


def player_authorizer(token: str, request_context: dict[str, Any]) -> dict[str, Any]:
    token = token.removeprefix("Bearer ").strip()
    now = time.monotonic()
    known = _known.get(token)
    if known is None or known[0] < now:
        player = player_for_token(token=token)
        context = (
            {"player_id": player.pk, "game": player.game.code, "nickname": player.nickname}
            if player
            else None
        )
        if len(_known) >= _MAX_KNOWN:
            _known.clear()
        # Unknown tokens are remembered briefly: a token may be used the moment its join commits.
        known = _known[token] = (now + (TOKEN_TTL if context else 2.0), context)
    context = known[1]
    if context is None:
        return {"is_authorized": False, "ttl_override": 2}
    return {"is_authorized": True, "handler_context": context, "ttl_override": TOKEN_TTL}
