"""The game's realtime channel paths (DESIGN §8), in one place."""

from __future__ import annotations

from .conf import quiz_settings


def game_channel(code: str) -> str:
    return f"/{quiz_settings.namespace}/{code}/game"


def leaderboard_channel(code: str) -> str:
    return f"/{quiz_settings.namespace}/{code}/leaderboard"


def host_channel(code: str) -> str:
    """Staff pages only: live answer counts."""
    return f"/{quiz_settings.namespace}/{code}/host"


def presence_channel(code: str) -> str:
    """Staff pages: who is connected to the game (realtime's presence channel of the game channel)."""
    return f"/$presence/{quiz_settings.namespace}/{code}/game"


def player_channel(code: str, player_id: int) -> str:
    return f"/{quiz_settings.namespace}/{code}/players/{player_id}"


def answers_channel(code: str) -> str:
    return f"/{quiz_settings.namespace}/{code}/answers"


def channels_for_player(code: str, player_id: int) -> dict[str, str]:
    return {
        "game": game_channel(code),
        "leaderboard": leaderboard_channel(code),
        "player": player_channel(code, player_id),
        "answers": answers_channel(code),
    }
