"""The check a stored JSON record's fields pass before anything reads them: exactly the fields
its shape allows, each of the kind its rule accepts, the required ones present; anything else
is a corrupt record of its kind."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from gateway.store.records import checked_fields

FieldCheck = Callable[[object], bool]
# Each field a record may have: (required, check).
RecordShape = Mapping[str, tuple[bool, FieldCheck]]
# The check itself lives beside the records it guards (gateway/store/records.py).
__all__ = ["FieldCheck", "RecordShape", "checked_fields", "is_number", "is_text"]


def is_text(value: object) -> bool:
    return isinstance(value, str)


def is_number(value: object) -> bool:
    """A finite int or float, never a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
