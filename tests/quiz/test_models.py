"""``quiz.models``: the nickname rule, the one place it is written."""

from __future__ import annotations

import pytest

from quiz import services
from quiz.exceptions import InvalidNickname
from quiz.models import NICKNAME_MAX_LENGTH, Game, Player, nickname_clean

RULE = "nickname: A nickname is 1 to 40 characters."


@pytest.mark.parametrize(
    ("value", "nickname"),
    [
        ("ada", "ada"),
        ("  ada lovelace ", "ada lovelace"),
        ("x" * 40, "x" * 40),
        (" " + "é" * 40 + " ", "é" * 40),
    ],
)
def test_a_nickname_is_stored_without_its_surrounding_spaces(value, nickname) -> None:
    assert nickname_clean(value) == nickname


@pytest.mark.parametrize("value", ["", "   ", "x" * 41, None, 7, ["ada"]])
def test_an_empty_long_or_non_text_nickname_breaks_the_rule(value) -> None:
    with pytest.raises(InvalidNickname) as caught:
        nickname_clean(value)

    assert (caught.value.status, caught.value.code, caught.value.message) == (400, "bad_request", RULE)


def test_the_column_holds_the_longest_nickname_the_rule_allows() -> None:
    assert Player._meta.get_field("nickname").max_length == NICKNAME_MAX_LENGTH == 40


@pytest.mark.django_db
def test_the_join_service_applies_the_rule_to_each_request_alone(game: Game) -> None:
    outcomes = services.players_join(
        requests=[
            services.JoinRequest(code=game.code, nickname=" "),
            services.JoinRequest(code=game.code, nickname=" ada "),
        ]
    )

    assert isinstance(outcomes[0], InvalidNickname) and outcomes[0].message == RULE
    player, _ = outcomes[1]  # type: ignore[misc]
    assert list(Player.objects.values_list("nickname", flat=True)) == [player.nickname] == ["ada"]
