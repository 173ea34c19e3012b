"""Players authorize with their token: ``realtime``'s CUSTOM auth mode (the Lambda authorizer's twin).

The site sets ``REALTIME["CUSTOM_AUTHORIZER"]["HANDLER"] = "quiz.auth.player_authorizer"``;
the player page sends the token as the ``authorization`` credential. The handler
context carries the player and game, which the quiz namespace's handlers check.
"""

from __future__ import annotations

from typing import Any

from realtime.state import register
from realtime.store.cache import TTLCache

from .models import device_for
from .selectors import player_for_token

# A player's token never changes: this process remembers each answer for a while,
# so connecting, subscribing three times and publishing cost one lookup, not five.
TOKEN_TTL = 300.0
# Token -> the handler context of its player, or None for an unknown token.
token_cache: TTLCache[dict[str, Any] | None] = register(TTLCache(max_entries=200_000))


def player_authorizer(token: str, request_context: dict[str, Any]) -> dict[str, Any]:
    token = token.removeprefix("Bearer ").strip()
    hit, context = token_cache.get(token)
    if not hit:
        player = player_for_token(token=token)
        context = (
            {
                "player_id": player.pk,
                "game": player.game.code,
                "nickname": player.nickname,
                "device": device_for(player.token_hash),
            }
            if player
            else None
        )
        # Unknown tokens are remembered briefly: a token may be used the moment its join commits.
        token_cache.set(token, context, TOKEN_TTL if context else 2.0)
    if context is None:
        return {"is_authorized": False, "ttl_override": 2}
    return {"is_authorized": True, "handler_context": context, "ttl_override": TOKEN_TTL}
