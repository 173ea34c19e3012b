"""The host page's forms (``/quiz/host/``): a new game, and a question set from JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms

from .models import QuestionSet

# A question set is a few kilobytes; a file much larger than this is not one.
MAX_IMPORT_BYTES = 1_000_000


class GameCreateForm(forms.Form):
    question_set = forms.TypedChoiceField(coerce=int, label="Question set")
    title = forms.CharField(max_length=200, required=False, help_text="The question set's title if empty.")
    auto_reveal = forms.BooleanField(
        required=False, label="Reveal automatically", help_text="The answer shows as soon as time is up."
    )
    auto_next = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=600.0,
        label="Next question after (seconds)",
        help_text="Empty: you press Next. After the last question: the podium.",
        widget=forms.NumberInput(attrs={"step": "1", "placeholder": "e.g. 8"}),
    )

    def __init__(self, *args: Any, question_sets: Sequence[QuestionSet], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["question_set"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [
            (
                question_set.pk,
                f"{question_set.title} ({getattr(question_set, 'question_count', '?')} questions)",
            )
            for question_set in question_sets
        ]


class QuestionSetImportForm(forms.Form):
    file = forms.FileField(required=False, label="A JSON file")
    text = forms.CharField(
        required=False,
        label="…or the JSON itself",
        widget=forms.Textarea(
            attrs={
                "rows": 6,
                "spellcheck": "false",
                "placeholder": '{"title": "…", "questions": '
                '[{"text": "…", "choices": ["…", "…"], "correct": 0}]}',
            }
        ),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload, text = cleaned.get("file"), cleaned.get("text")
        if upload is not None:
            if upload.size > MAX_IMPORT_BYTES:
                raise forms.ValidationError("The file is too large for a question set.")
            raw = upload.read()
        elif text:
            raw = text.encode()
        else:
            raise forms.ValidationError("Choose a JSON file or paste the JSON.")
        try:
            cleaned["data"] = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise forms.ValidationError(f"This is not JSON: {error}") from None
        return cleaned
