"""The check a stored JSON record's fields pass before anything reads them: exactly the fields
its shape allows, each of the kind its rule accepts, the required ones present; anything else
is a corrupt record of its kind."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from gateway.store.records import CorruptRecord, RecordKind

FieldCheck = Callable[[object], bool]
# Each field a record may have: (required, check).
RecordShape = Mapping[str, tuple[bool, FieldCheck]]


def is_text(value: object) -> bool:
    return isinstance(value, str)


def is_number(value: object) -> bool:
    """A finite int or float, never a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def checked_fields(data: object, shape: RecordShape, kind: RecordKind) -> dict[str, Any]:
    """`data` (a copy) if it is an object with exactly the fields `shape` allows, each of its
    kind and the required ones present; CorruptRecord(kind) otherwise."""
    if not isinstance(data, dict):
        raise CorruptRecord(kind)
    for name, value in data.items():
        rule = shape.get(name)
        if rule is None or not rule[1](value):
            raise CorruptRecord(kind)
    if any(required and name not in data for name, (required, _) in shape.items()):
        raise CorruptRecord(kind)
    return dict(data)
