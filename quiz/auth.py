"""Players authorize with their token: ``realtime``'s CUSTOM auth mode (the Lambda authorizer's twin).

The site sets ``REALTIME["CUSTOM_AUTHORIZER"]["HANDLER"] = "quiz.auth.player_authorizer"``;
the player page sends the token as the ``authorization`` credential. The handler
context carries the player and game, which the quiz namespace's handlers check.
"""

from __future__ import annotations

from typing import Any

from .services import player_for_token

# A player's token never changes; a few minutes of caching spares the database.
TOKEN_TTL = 300


def player_authorizer(token: str, request_context: dict[str, Any]) -> dict[str, Any]:
    player = player_for_token(token=token.removeprefix("Bearer ").strip())
    if player is None:
        return {"is_authorized": False, "ttl_override": 10}
    return {
        "is_authorized": True,
        "handler_context": {"player_id": player.pk, "game": player.game.code, "nickname": player.nickname},
        "ttl_override": TOKEN_TTL,
    }
