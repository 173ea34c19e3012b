"""Row-level helpers shared by the services that insert in batches."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import IntegrityError, transaction

T = TypeVar("T")


def insert_each_once(rows: list[tuple[T, Any]]) -> list[tuple[T, Any]]:
    """Insert model instances in one statement; returns those a unique constraint refused.

    ``rows`` pairs each instance with the caller's tag for it (its index in a
    batch). The rows were checked against the database in the caller's
    transaction; only a concurrent writer (another process on PostgreSQL) can
    still take one, and then they go in one by one, each in its own savepoint.
    """
    if not rows:
        return []
    model = type(rows[0][1])
    try:
        with transaction.atomic():
            model.objects.bulk_create([instance for _, instance in rows])
        return []
    except IntegrityError:
        pass
    refused = []
    for tag, instance in rows:
        instance.pk = None
        try:
            with transaction.atomic():
                instance.save(force_insert=True)
        except IntegrityError:
            refused.append((tag, instance))
    return refused
