"""Writes of question sets."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from ..models import Question, QuestionSet


@transaction.atomic
def question_set_import(*, data: dict[str, Any]) -> QuestionSet:
    """Create a question set from ``{"title", "questions": [{"text", "choices",
    "correct", "time_limit"?, "points"?}]}``.

    Raises:
        ValidationError: a missing field or an invalid question.
    """
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list) or not data["questions"]:
        raise ValidationError("A question set is an object with a title and a non-empty list of questions.")
    question_set = QuestionSet.objects.create(title=str(data.get("title") or "Untitled"))
    for order, raw in enumerate(data["questions"]):
        if not isinstance(raw, dict):
            raise ValidationError(f"Question {order + 1} is not an object.")
        question = Question(
            question_set=question_set,
            order=order,
            text=raw.get("text", ""),
            choices=raw.get("choices"),
            correct_choice=raw.get("correct", raw.get("correct_choice")),
            time_limit=raw.get("time_limit", 20.0),
            points=raw.get("points", 1000),
        )
        try:
            question.full_clean(exclude=["question_set"])
        except ValidationError as error:
            raise ValidationError(f"Question {order + 1}: {'; '.join(error.messages)}") from None
        question.save()
    return question_set
